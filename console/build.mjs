// Builds the console into dist/, the generated artifact the `baton` binary
// embeds and serves at /console. `--check` builds in memory and fails when
// a committed file differs, so a stale dist/ cannot land.
import { build } from "esbuild";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, "dist");
const check = process.argv.includes("--check");

/** Swaps the editor's markdown renderer for a plain-text one (see shims/). */
const shims = {
  name: "shims",
  setup(b) {
    b.onResolve({ filter: /\/utils\/markdown(\.js)?$/ }, (args) =>
      args.importer.includes("codemirror-json-schema") ? { path: join(root, "shims/markdown.js") } : undefined,
    );
  },
};

const result = await build({
  entryPoints: [join(root, "src/main.tsx")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  write: false,
  outdir: out,
  entryNames: "console",
  jsx: "automatic",
  loader: { ".json": "json" },
  define: { "process.env.NODE_ENV": '"production"' },
  plugins: [shims],
  metafile: process.argv.includes("--sizes"),
  logLevel: "warning",
});
if (result.metafile) {
  const by = {};
  for (const output of Object.values(result.metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const m = input.match(/node_modules\/((@[^/]+\/)?[^/]+)/);
      const k = m ? m[1] : input;
      by[k] = (by[k] ?? 0) + bytesInOutput;
    }
  }
  for (const [k, v] of Object.entries(by).sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${Math.round(v / 1024)} KB ${k}`);
}

const files = new Map(result.outputFiles.map((f) => [f.path, Buffer.from(f.contents)]));
files.set(join(out, "index.html"), await readFile(join(root, "index.html")));

let stale = [];
let gz = 0;
for (const [path, bytes] of files) {
  gz += gzipSync(bytes, { level: 9 }).length;
  if (check) {
    const committed = await readFile(path).catch(() => null);
    if (!committed || !committed.equals(bytes)) stale.push(path.slice(root.length + 1));
  } else {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  }
}
const sizes = `${[...files.values()].reduce((n, b) => n + b.length, 0)} bytes, ${gz} gzipped`;
if (stale.length) {
  console.error(`console/dist is stale (${stale.join(", ")}): run \`npm run build\` in console/ and commit dist/`);
  process.exit(1);
}
console.log(check ? `console/dist is current (${sizes})` : `built console/dist (${sizes})`);
