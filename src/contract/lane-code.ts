/**
 * A lane's code (see subjects.ts): 8 base62 characters of the SHA-256 of
 * its queue, target, band and tenant. Apart from subjects.ts because it
 * needs node:crypto, and the browser's typed client and dashboard read the
 * rest of the contract.
 */
import { createHash } from "node:crypto";
import { LANE_CODE_LENGTH, NO_TENANT, type Band } from "./subjects.js";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * Codes computed lately: every submit names its lane, and the hash was a
 * tenth of a submit's CPU. Bounded, since tenants are the callers' to name.
 */
const known = new Map<string, string>();
const KNOWN_MAX = 4096;

export function laneCode(queue: string, target: string, band: Band, tenant: string | null): string {
  const described = `${queue}\n${target}\n${band}\n${tenant ?? NO_TENANT}`;
  const cached = known.get(described);
  if (cached !== undefined) return cached;
  const digest = createHash("sha256").update(described).digest();
  let code = "";
  for (let i = 0; i < LANE_CODE_LENGTH; i++) code += BASE62[digest[i]! % 62];
  if (known.size >= KNOWN_MAX) known.clear();
  known.set(described, code);
  return code;
}
