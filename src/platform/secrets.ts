/**
 * Secrets Bosun hands out (API keys; compute enroll tokens and server
 * credentials use the same scheme): an id anyone may see and a random
 * secret shown once. Only a hash of the secret is ever stored, and a
 * presented secret is compared with it in constant time.
 *
 * The secrets are 256 random bits, so a plain SHA-256 is the right hash: a
 * slow password hash (scrypt, argon2) protects guessable secrets, and these
 * cannot be guessed; a fast hash keeps the check off the request's cost.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** `length` random base62 characters (rejection sampling: every character equally likely). */
export function randomToken(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += BASE62[byte % 62];
    }
  }
  return out;
}

/** 43 base62 characters: just over 256 bits. */
export const SECRET_LENGTH = 43;
/** 16 base62 characters: ids never collide in practice and are safe as a subject token / KV key. */
export const SECRET_ID_LENGTH = 16;

export interface IssuedSecret {
  /** Public: stored as the key, shown in listings, logged. */
  id: string;
  /** The whole credential the holder presents: `<prefix>_<id>_<secret>`. Shown once. */
  token: string;
  /** What is stored: hashOf(the secret part). */
  hash: string;
}

/**
 * A new credential. `prefix` names its kind (`bsk` API key, e.g. `bse`
 * enroll token), so a leaked one is recognizable and cannot be presented
 * as another kind.
 */
export function issueSecret(prefix: string): IssuedSecret {
  const id = randomToken(SECRET_ID_LENGTH);
  const secret = randomToken(SECRET_LENGTH);
  return { id, token: `${prefix}_${id}_${secret}`, hash: hashOf(secret) };
}

/** Splits a presented credential of this kind into id and secret; undefined when it is not one. */
export function parseSecret(prefix: string, token: string): { id: string; secret: string } | undefined {
  const match = new RegExp(`^${prefix}_([0-9A-Za-z]{${SECRET_ID_LENGTH}})_([0-9A-Za-z]{${SECRET_LENGTH}})$`).exec(token);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

/** The stored form of a secret: SHA-256, hex. */
export const hashOf = (secret: string): string => createHash("sha256").update(secret, "utf8").digest("hex");

/**
 * Whether `secret` hashes to `storedHash`, in time independent of where they
 * differ (both sides are hashed to the same length first, so an operator
 * secret of any length compares in constant time too).
 */
export function secretMatches(secret: string, storedHash: string): boolean {
  const presented = createHash("sha256").update(secret, "utf8").digest();
  const stored = Buffer.from(storedHash, "hex");
  return stored.length === presented.length && timingSafeEqual(presented, stored);
}
