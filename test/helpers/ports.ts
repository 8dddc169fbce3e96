import net from "node:net";

/** A TCP port that was free a moment ago: the OS picks it for a listener on port 0. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("no port from the OS"));
        return;
      }
      const { port } = address;
      server.close(() => resolve(port));
    });
  });
}
