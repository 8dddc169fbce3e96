/**
 * HTTP over a bare socket, for requests fetch() refuses to send (bad
 * Content-Length, no Host, unknown methods, trickled bodies) and for
 * seeing exactly what the server writes back.
 */
import net from "node:net";

export interface RawReply {
  /** 0 when nothing parseable came back. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** A whole response arrived, or the server closed the connection: our timeout did not end the wait. */
  finished: boolean;
  elapsedMs: number;
}

/**
 * Writes `request` (then each of `more`, `gapMs` apart) and reads until the
 * server closes or, once a full response with a Content-Length has arrived,
 * stops; gives up after timeoutMs.
 */
export function rawHttp(port: number, request: string | Buffer, opts: { timeoutMs?: number; more?: (string | Buffer)[]; gapMs?: number } = {}): Promise<RawReply> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (finished: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...parse(Buffer.concat(chunks).toString("latin1")), finished, elapsedMs: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 5000);
    socket.on("connect", () => {
      socket.write(request);
      (opts.more ?? []).forEach((part, i) => setTimeout(() => !socket.destroyed && socket.write(part), (i + 1) * (opts.gapMs ?? 100)));
    });
    socket.on("data", (d) => {
      chunks.push(d);
      if (complete(Buffer.concat(chunks).toString("latin1"))) finish(true);
    });
    socket.on("end", () => finish(true));
    socket.on("close", () => finish(true));
    socket.on("error", () => finish(true));
  });
}

function complete(text: string): boolean {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
  return length !== null && text.length - end - 4 >= Number(length[1]);
}

function parse(text: string): Omit<RawReply, "finished" | "elapsedMs"> {
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return { status: 0, headers: {}, body: text };
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1] ?? 0), headers, body: Buffer.from(text.slice(end + 4), "latin1").toString("utf8") };
}

/** A request line plus headers (Host and Connection: close unless given), CRLF-joined, and an optional body. */
export function request(method: string, path: string, headers: Record<string, string> = {}, body = ""): string {
  const all = { host: "127.0.0.1", connection: "close", ...headers };
  const lines = Object.entries(all)
    .filter(([, v]) => v !== "")
    .map(([k, v]) => `${k}: ${v}`);
  return `${method} ${path} HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n${body}`;
}
