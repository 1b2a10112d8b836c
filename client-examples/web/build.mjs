// Bundles src/ into dist/ with the page and its stylesheet.
// BATON_URL (default http://127.0.0.1:8080) is the Baton the page talks to
// unless the address says ?baton=…
import { build } from "esbuild";
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, "dist");
await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(root, "src/main.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  sourcemap: true,
  minify: process.argv.includes("--minify"),
  outfile: join(out, "app.js"),
  define: { __BATON_URL__: JSON.stringify(process.env.BATON_URL ?? "http://127.0.0.1:8080") },
  logLevel: "warning",
});
for (const file of ["index.html", "style.css"]) await copyFile(join(root, file), join(out, file));
console.log(`built ${out}`);
