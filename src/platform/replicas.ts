/**
 * How many copies of every stream and bucket Bosun asks JetStream to keep:
 * `--replicas N` when given, else 1 on a single server and 3 when the
 * server reports a cluster of three or more nodes.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";

export interface ReplicaPolicy {
  replicas: number;
  /** Asked for with --replicas: existing streams and buckets are scaled to it, not just reported. */
  explicit: boolean;
  /** Why this count, for the start-up line. */
  why: string;
  /** Nodes of the cluster the server advertises (1 for a single server). */
  clusterNodes: number;
}

/**
 * The cluster as the connected server describes it: its cluster name, and
 * the client URLs of every node it has a route to (itself included). A
 * cluster configured with `no_advertise` lists none: then only --replicas
 * can say.
 */
export function clusterOf(nc: NatsConnection): { name: string | undefined; nodes: number } {
  const info = nc.info;
  const urls = new Set(info?.connect_urls ?? []);
  return { name: info?.cluster, nodes: info?.cluster ? Math.max(1, urls.size) : 1 };
}

export function replicaPolicy(nc: NatsConnection, asked: number | undefined, log: Logger): ReplicaPolicy {
  const cluster = clusterOf(nc);
  if (asked !== undefined) {
    if (asked > cluster.nodes) log.warn({ replicas: asked, cluster_nodes: cluster.nodes }, "--replicas is larger than the cluster the server shows: creating streams will fail until enough nodes are up");
    return { replicas: asked, explicit: true, why: "--replicas", clusterNodes: cluster.nodes };
  }
  if (cluster.nodes >= 3) return { replicas: 3, explicit: false, why: `cluster ${cluster.name} of ${cluster.nodes} nodes`, clusterNodes: cluster.nodes };
  if (cluster.name) {
    // Two nodes cannot keep a majority when one goes: R2 would be less available than R1.
    log.warn({ cluster: cluster.name, cluster_nodes: cluster.nodes }, "the server is in a cluster but shows fewer than 3 nodes: new streams get 1 replica unless --replicas says otherwise");
  }
  return { replicas: 1, explicit: false, why: cluster.name ? `cluster ${cluster.name} shows ${cluster.nodes} node(s)` : "single server", clusterNodes: cluster.nodes };
}
