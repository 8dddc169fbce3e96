/**
 * An HttpTransport exchange over node:http (and node:https), for a Node
 * process that calls a gateway all the time (a compute worker). fetch costs
 * several times as much per call: a Request and a Response with their web
 * streams, and an AbortSignal made and followed for each. Here a call is
 * one write (headers and body together) on a kept-alive socket, and its
 * answer is read whole as text.
 */
import http from "node:http";
import https from "node:https";
import type { AnswerHeaders, Exchange } from "./http.js";

/** As fetch (undici) does by default: a gateway that goes silent this long mid-call is given up on. */
const SILENCE_MS = 300_000;

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

export const nodeExchange: Exchange = ({ method, url, headers, body, signal }) =>
  new Promise((resolve, reject) => {
    const secure = url.startsWith("https:");
    const options = {
      method,
      headers: body === undefined ? headers : { ...headers, "content-length": String(Buffer.byteLength(body)) },
      agent: secure ? agents.https : agents.http,
      ...(signal && { signal }),
    };
    const req = (secure ? https : http).request(url, options, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: headersOf(res.headers), text }));
      res.on("error", reject);
      res.on("close", () => res.complete || reject(new Error("the gateway's answer was cut short")));
    });
    req.setTimeout(SILENCE_MS, () => req.destroy(new Error(`no word from the gateway in ${SILENCE_MS} ms`)));
    req.on("error", reject);
    req.end(body);
  });

const headersOf = (headers: http.IncomingHttpHeaders): AnswerHeaders => ({
  get: (name) => {
    const value = headers[name.toLowerCase()];
    return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value;
  },
});
