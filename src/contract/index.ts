export * from "./subjects.js";
export * from "./lane-code.js";
export * from "./schemas.js";
export * from "./errors.js";
export * from "./codec.js";
export * from "./operations.js";
export * from "./limits.js";
export * from "./schedules.js";
