/**
 * Builds the dashboard into dist/ui/ (part of `npm run build`, after tsc):
 * one minified ES module and one stylesheet, named by content hash, and the
 * index.html that loads them. The HTTP route table comes from the built
 * contract, so the dashboard calls exactly the routes this gateway serves.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const out = path.join(root, "dist/ui");
const { routeTable } = await import(path.join(root, "dist/client/routes.js"));

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const result = await build({
  entryPoints: [path.join(root, "src/ui/main.ts")],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  outdir: out,
  entryNames: "[name]-[hash]",
  chunkNames: "chunk-[hash]",
  // The chart's code (uPlot) is its own chunk, loaded after the first paint.
  splitting: true,
  define: { __BOSUN_ROUTES__: JSON.stringify(routeTable()) },
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});

// The page's own module is the output of main.ts; the rest are chunks it imports (statically or later).
const outputs = Object.entries(result.metafile.outputs).map(([f, meta]) => ({ file: path.basename(f), main: meta.entryPoint === "src/ui/main.ts" }));
const js = outputs.find((o) => o.main && o.file.endsWith(".js")).file;
const css = outputs.find((o) => o.file.endsWith(".css")).file;
const chunks = outputs.filter((o) => !o.main && o.file.endsWith(".js")).map((o) => o.file);
const staticImports = result.metafile.outputs[path.relative(root, path.join(out, js))].imports.filter((i) => i.kind === "import-statement").map((i) => path.basename(i.path));
const template = await readFile(path.join(root, "src/ui/index.html"), "utf8");
await writeFile(path.join(out, "index.html"), template.replace("%JS%", js).replace("%CSS%", css));

const gzip = async (files) => {
  let bytes = 0;
  for (const file of files) bytes += gzipSync(await readFile(path.join(out, file))).length;
  return bytes;
};
const first = [js, css, "index.html", ...staticImports];
const all = [...new Set([...first, ...chunks])];
const gzipped = await gzip(all);
const sizes = { files: all, gzip_bytes: gzipped, first_paint_gzip_bytes: await gzip(first) };
await writeFile(path.join(out, "bundle-size.json"), `${JSON.stringify(sizes, null, 2)}\n`);
console.log(`dashboard: dist/ui/ (${(gzipped / 1024).toFixed(1)} KiB gzipped, ${(sizes.first_paint_gzip_bytes / 1024).toFixed(1)} KiB before the first paint)`);
