/**
 * `bosun dev --cluster 3`: the shipped three-node configuration
 * (nats-cluster/node-N.conf + common.conf) written into dev's data dir with
 * each node's store there, and a readiness check that waits until every
 * node routes to the others and JetStream has elected its meta leader.
 * Starting the processes is dev's (the same way it starts one server).
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";

const SHIPPED = fileURLToPath(new URL("../../nats-cluster/", import.meta.url));
export const CLUSTER_NODES = 3;

export interface DevClusterNode {
  name: string;
  url: string;
  configFile: string;
}

/** The shipped configs' first client and route ports (node N listens on these + N - 1). */
const SHIPPED_CLIENT_PORT = 4222;
const SHIPPED_ROUTE_PORT = 6222;

/**
 * The nodes' configs in `dataDir` (rewritten at every start) and the
 * NATS_URL listing all three. With a NATS_URL port P other than 4222, node
 * N listens on P + N - 1 and routes on P + 2000 + N - 1, so two devs (or a
 * test) can run side by side; monitoring ports are left out for the same
 * reason.
 */
/** `extra`: lines dev adds to every node's config (its no_auth_user). */
export function writeClusterConfigs(dataDir: string, clientPort = SHIPPED_CLIENT_PORT, extra = ""): { url: string; nodes: DevClusterNode[] } {
  const dir = path.resolve(dataDir, "nats-cluster");
  mkdirSync(dir, { recursive: true });
  for (const shared of ["common.conf", "roles.conf"]) copyFileSync(path.join(SHIPPED, shared), path.join(dir, shared));
  const routePort = clientPort + (SHIPPED_ROUTE_PORT - SHIPPED_CLIENT_PORT);
  if (routePort + CLUSTER_NODES > 65535) throw new Error(`NATS_URL's port ${clientPort} leaves no room for the cluster's route ports (port + 2000)`);
  const movePort = (port: number): number => {
    if (port >= SHIPPED_CLIENT_PORT && port < SHIPPED_CLIENT_PORT + CLUSTER_NODES) return clientPort + port - SHIPPED_CLIENT_PORT;
    if (port >= SHIPPED_ROUTE_PORT && port < SHIPPED_ROUTE_PORT + CLUSTER_NODES) return routePort + port - SHIPPED_ROUTE_PORT;
    return port;
  };
  const nodes = Array.from({ length: CLUSTER_NODES }, (_, i) => {
    const shipped = readFileSync(path.join(SHIPPED, `node-${i + 1}.conf`), "utf8");
    const name = /^server_name:\s*(\S+)/m.exec(shipped)?.[1] ?? `bosun-${i + 1}`;
    const configFile = path.join(dir, `node-${i + 1}.conf`);
    const storeDir = path.join(dir, name);
    const text = shipped
      .replace(/^(\s*store_dir:\s*).*$/m, `$1${JSON.stringify(storeDir)}`)
      .replace(/^http:.*\n/m, "")
      .replace(/(127\.0\.0\.1):(\d+)/g, (_, host: string, port: string) => `${host}:${movePort(Number(port))}`);
    writeFileSync(configFile, `# Written by bosun dev from ${path.join(SHIPPED, `node-${i + 1}.conf`)}; rewritten at every start.\n${text}\n${extra}\n`);
    const listen = /^listen:\s*(\S+)/m.exec(text)?.[1] ?? `127.0.0.1:${clientPort + i}`;
    return { name, url: `nats://${listen}`, configFile };
  });
  return { url: nodes.map((n) => n.url).join(","), nodes };
}

/** Resolves once every node answers, routes to the others and JetStream has a meta leader; false at the deadline. */
export async function clusterReady(nodes: readonly DevClusterNode[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await allRouted(nodes)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

async function allRouted(nodes: readonly DevClusterNode[]): Promise<boolean> {
  for (const node of nodes) {
    try {
      const nc = await connect({ servers: node.url, timeout: 1000, reconnect: false, noAsyncTraces: true });
      try {
        if ((nc.info?.connect_urls?.length ?? 0) < nodes.length) return false;
        const reply = JSON.parse(new TextDecoder().decode((await nc.request("$JS.API.INFO", "", { timeout: 2000 })).data)) as { error?: unknown };
        if (reply.error) return false;
      } finally {
        await nc.close();
      }
    } catch {
      return false;
    }
  }
  return true;
}
