/**
 * Every limit Bosun puts on what enters it, named once. The schemas, the
 * decode boundary (codec.ts), the error replies (errors.ts), the gateway
 * and the heartbeat tracker read them from here; docs/guarantees.md lists
 * them. Anything with publish rights can write into Bosun's streams and
 * buckets, so what is read back is held to the same limits as a submit.
 */

/** Queue, tenant and worker names: one NATS subject token of `A-Z a-z 0-9 _ -`. */
export const MAX_NAME_LENGTH = 64;
/** A job id is one subject token too (a KV key, and part of stream subjects). */
export const MAX_JOB_ID_LENGTH = 64;
/** A handler name (printable characters, no control characters). */
export const MAX_JOB_TYPE_LENGTH = 200;
/** Visible ASCII only: it travels in HTTP and NATS headers and in every log line. */
export const MAX_CORRELATION_ID_LENGTH = 128;
/** A W3C traceparent (version 00 is 55 characters; later versions may append fields). */
export const MAX_TRACEPARENT_LENGTH = 128;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 256;

/** Deepest nesting of arrays and objects in any JSON document read, payloads included. */
export const MAX_JSON_DEPTH = 64;

export const MAX_ATTEMPTS = 100;
export const MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000;
export const MAX_DELAY_MS = 365 * 24 * 3600 * 1000;
export const MAX_WAIT_MS = 300_000;
export const MAX_PRIORITY = 1000;
/** Manual retries of one dead job. */
export const MAX_GENERATION = 1_000_000;
/** Entries of one batch submit (each is validated and accepted on its own). */
export const MAX_BATCH = 1000;
/** Jobs on one listing page. */
export const MAX_LIST_LIMIT = 1000;
/** A listing cursor (an encoded sequence per source stream; Bosun's are far shorter). */
export const MAX_CURSOR_LENGTH = 512;

/**
 * Room a job message leaves below the NATS server's max_payload (which
 * counts headers too) for what later writes of the same job add: the record,
 * every attempt's error, headers. A submit whose job message would not leave
 * it is refused with 413 before anything is written, so every accepted job's
 * result and dead letter still fit.
 */
export const MESSAGE_HEADROOM_BYTES = 64 * 1024;
/** An attempt's error as stored (longer handler messages are cut). */
export const MAX_JOB_ERROR_CODE_LENGTH = 64;
export const MAX_JOB_ERROR_MESSAGE_LENGTH = 512;

/** Error replies (HTTP and NATS): longer messages are cut, larger details dropped. */
export const MAX_ERROR_MESSAGE_LENGTH = 512;
export const MAX_ERROR_DETAILS_BYTES = 4096;

/**
 * A heartbeat larger than this is ignored (and refused by its stream). A
 * real one takes about 250 bytes per process, so MAX_POOL_SIZE processes and
 * a few hundred job types stay below; a supervisor whose own would not logs it.
 */
export const MAX_HEARTBEAT_BYTES = 128 * 1024;
/** Heartbeats of one worker closer together than this are ignored (a supervisor sends at most one per 250 ms). */
export const MIN_HEARTBEAT_GAP_MS = 100;
/** Largest --max of a supervisor, and so the most processes a heartbeat may list. */
export const MAX_POOL_SIZE = 256;
/** Workers tracked at once from heartbeats; beyond it, new ones are ignored until others go silent. */
export const MAX_TRACKED_WORKERS = 1024;

/** HTTP: the whole request (headers and body) must arrive within this. */
export const HTTP_REQUEST_TIMEOUT_MS = 30_000;
/** HTTP: the headers must arrive within this. */
export const HTTP_HEADERS_TIMEOUT_MS = 10_000;
/** HTTP: request headers larger than this are refused with 431 (Node's default). */
export const HTTP_MAX_HEADER_BYTES = 16 * 1024;
/** A job file's name (one path segment): the longest path parameter is one. */
export const MAX_FILE_NAME_LENGTH = 255;
/** HTTP: a path parameter (a job id, a worker id, a file name) longer than this is refused with 414. */
export const HTTP_MAX_PARAM_LENGTH = MAX_FILE_NAME_LENGTH;
/**
 * One job file's bytes: a handler's ctx.files.read holds a whole file in
 * memory, and an upload runs within one HTTP request's time.
 */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** Files one job may keep: its file list is one KV value, rewritten on every write. */
export const MAX_FILES_PER_JOB = 1000;
/** Bounds of the per-queue limits in the ops flags (issue 15): wide enough for any real queue, small enough to stay exact integers. */
export const MAX_QUEUE_CONCURRENCY = 100_000;
export const MAX_RATE_LIMIT = 1_000_000;
export const MAX_RATE_WINDOW_MS = 24 * 60 * 60 * 1000;
export const MAX_PENDING_LIMIT = 100_000_000;
