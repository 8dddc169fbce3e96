/** What a handler module imports: `import { defineHandlers } from "bosun"`. */
export { defineHandlers } from "./actors/handlers.js";
export type { HandlerContext, HandlerDefinition, PayloadSchema } from "./actors/handlers.js";
export type { FileData, JobFiles } from "./actors/files.js";
export * from "./contract/index.js";
