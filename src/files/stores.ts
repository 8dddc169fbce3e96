/** The two stores of job files, opened together over one connection (see objects.ts and lists.ts). */
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { buckets } from "../contract/index.js";
import { FileLists } from "./lists.js";
import { FileObjects } from "./objects.js";

export interface FileStores {
  jsm: JetStreamManager;
  objects: FileObjects;
  lists: FileLists;
}

/** `listsKv`: the bucket a supervisor's topology has open already; else it is opened here. */
export async function openFileStores(nc: NatsConnection, log: Logger, listsKv?: KV): Promise<FileStores> {
  const jsm = await jetstreamManager(nc);
  const kv = listsKv ?? (await new Kvm(nc).open(buckets.fileLists));
  return { jsm, objects: await FileObjects.open(nc, jsm, log), lists: new FileLists(kv, jsm, log) };
}
