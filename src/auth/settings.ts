/**
 * Whether auth is on, and the bootstrap admin key, as every process reads
 * them at start. Never silently open: an unknown BOSUN_AUTH, or auth on
 * without a usable admin key, stops start-up with one line.
 */
import { Match, type MsgHdrs } from "@nats-io/nats-core";
import { BosunError } from "../contract/index.js";
import { hashOf } from "../platform/secrets.js";

/** The request header (HTTP and NATS) that carries an API key: `Authorization: Bearer <key>`. */
export const AUTHORIZATION_HEADER = "Authorization";
/** A NATS request's Authorization header, whatever its case (HTTP's are case-blind, and so is every reader here). */
export const authorizationHeaderOf = (headers: MsgHdrs | undefined): string | undefined => headers?.get(AUTHORIZATION_HEADER, Match.IgnoreCase) || undefined;
export const ADMIN_KEY_ENV = "BOSUN_ADMIN_KEY";
/** Shorter than this is not a key an operator generated (`openssl rand -hex 32` gives 64). */
export const MIN_ADMIN_KEY_LENGTH = 24;

export type AuthMode = "on" | "off";

export interface AuthSettings {
  on: boolean;
  /** SHA-256 of BOSUN_ADMIN_KEY; set whenever auth is on. */
  adminKeyHash: string | undefined;
}

export class AuthConfigError extends Error {
  override readonly name = "AuthConfigError";
}

/**
 * `mode` is the --auth / BOSUN_AUTH value (validated to on|off by the config
 * schema); unset means on exactly when BOSUN_ADMIN_KEY is set.
 */
export function resolveAuth(mode: AuthMode | undefined, env: NodeJS.ProcessEnv = process.env): AuthSettings {
  const adminKey = env[ADMIN_KEY_ENV];
  const on = mode === undefined ? adminKey !== undefined && adminKey !== "" : mode === "on";
  if (!on) return { on: false, adminKeyHash: undefined };
  if (!adminKey) throw new AuthConfigError(`auth is on but ${ADMIN_KEY_ENV} is not set: set it to a secret of at least ${MIN_ADMIN_KEY_LENGTH} characters (e.g. openssl rand -hex 32), or BOSUN_AUTH=off for local development`);
  if (adminKey.length < MIN_ADMIN_KEY_LENGTH || /\s/.test(adminKey)) {
    throw new AuthConfigError(`${ADMIN_KEY_ENV} is not a usable admin key: it needs at least ${MIN_ADMIN_KEY_LENGTH} characters and no whitespace (e.g. openssl rand -hex 32)`);
  }
  return { on: true, adminKeyHash: hashOf(adminKey) };
}

/** The start-up log line that says which it is. */
export const authLogLine = (auth: AuthSettings): string =>
  auth.on ? "auth on: every request needs an API key (Authorization: Bearer <key>)" : "auth OFF: every request is allowed (development and loopback only; set BOSUN_ADMIN_KEY to turn it on)";

/** Whether a listen address is this machine only. */
export const isLoopback = (host: string): boolean => host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);

/** The key of an `Authorization: Bearer <key>` value; undefined when absent, a 401 when malformed. */
export function bearerOf(value: string | undefined | null): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const match = /^Bearer +(\S{1,512})$/i.exec(value.trim());
  if (!match) throw new BosunError("unauthorized", "the Authorization header must be: Bearer <API key>");
  return match[1];
}
