/** Tenants and auth: API keys, the one authorization decision, and the start-up settings. */
export { API_KEY_PREFIX, BOOTSTRAP_KEY_ID, KeyStore, OPEN, type Principal } from "./keys.js";
export { ADMIN_JOB_TYPE_PREFIX, Gate, scopeSubmit, type LaneLookup } from "./gate.js";
export * from "./settings.js";
