/**
 * GET /ui: the web dashboard, static files built into dist/ui/ by the
 * package's build (src/ui/). Its assets are named by content hash, so they
 * are cached for good; index.html is revalidated, so an upgrade shows at once.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";
import { BosunError } from "../contract/index.js";

const UI_ROOT = fileURLToPath(new URL("../ui/", import.meta.url));

export async function registerDashboard(app: FastifyInstance): Promise<void> {
  if (!existsSync(path.join(UI_ROOT, "index.html"))) {
    // Run from a checkout that was not built: say so instead of a bare 404.
    app.get("/ui", async () => {
      throw new BosunError("not_found", "the dashboard is not built here (run npm run build)");
    });
    return;
  }
  await app.register(fastifyStatic, {
    root: UI_ROOT,
    prefix: "/ui/",
    index: "index.html",
    cacheControl: false,
    setHeaders: (reply, file) => reply.header("cache-control", file.endsWith(".html") ? "no-cache" : "public, max-age=31536000, immutable"),
  });
  app.get("/ui", async (_req, reply) => reply.redirect("/ui/"));
}
