// What the end-to-end tests stand on: the app built and type-checked, the
// real `baton` binary on a free 127.0.0.1 port with a temp SQLite file, a
// static server for dist/, and headless Chromium. Everything is bounded in
// time and torn down by `stop()`.

import { spawn, spawnSync } from "node:child_process";
import { cpSync, createReadStream, existsSync, mkdtempSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const WEB = resolve(fileURLToPath(import.meta.url), "../..");
export const REPO = resolve(WEB, "../..");
const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const BATON_BIN = resolve(REPO, process.env.BATON_BIN ?? "target/debug/baton");

/** Fails with `message` when `promise` takes longer than `ms`. */
export function within(ms, message, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${message}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { cwd: WEB, encoding: "utf8", timeout: 120_000 });
  if (r.status !== 0) {
    throw new Error(`${what} failed (${r.error ?? `exit ${r.status}`}):\n${r.stdout}\n${r.stderr}`);
  }
}

/** Type-checks and bundles the app into dist/. */
export function buildApp() {
  run(process.execPath, [join(WEB, "node_modules/typescript/bin/tsc"), "--noEmit", "-p", WEB], "tsc --noEmit");
  run(process.execPath, [join(WEB, "build.mjs")], "esbuild");
}

/**
 * Starts `baton` with the repository's flows and flags plus e2e/flows/
 * (and any `flowDirs`), on
 * port 0, and returns its base URL once `/healthz` answers. The address is
 * read from its JSON log line, so there is no race for a port.
 */
/** `databaseUrl` defaults to a new SQLite file in `dir`; a PostgreSQL URL must name an empty database. */
export async function startBaton({ dir, webOrigin, extraArgs = [], flowDirs = [], databaseUrl }) {
  if (!existsSync(BATON_BIN)) {
    throw new Error(`no baton binary at ${BATON_BIN}: run \`cargo build\` or set BATON_BIN`);
  }
  const flows = join(dir, `flows-${Date.now()}`);
  cpSync(join(REPO, "flows"), flows, { recursive: true });
  cpSync(join(WEB, "e2e/flows"), flows, { recursive: true });
  for (const extra of flowDirs) cpSync(extra, flows, { recursive: true });
  const logPath = join(dir, `baton-${Date.now()}.log`);
  const args = [
    // Server options belong to the top-level command (`baton --addr … [serve]`).
    "--addr", "127.0.0.1:0",
    "--database-url", databaseUrl ?? `sqlite://${join(dir, `baton-${Date.now()}.db`)}`,
    "--flows", flows,
    "--flags", join(REPO, "flags"),
    "--cors-allow-origin", webOrigin,
    "--log-format", "json",
    ...extraArgs,
  ];
  const child = spawn(BATON_BIN, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, BATON_LOG: "info" } });
  let log = "";
  const onData = (chunk) => {
    log += chunk;
  };
  child.stdout.setEncoding("utf8").on("data", onData);
  child.stderr.setEncoding("utf8").on("data", onData);
  const baton = {
    child,
    logPath,
    log: () => log,
    async stop() {
      writeFileSync(logPath, log);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await within(5000, "baton exits on SIGTERM", exited).catch(() => child.kill("SIGKILL"));
    },
  };
  const addr = await within(
    30_000,
    `baton to log its address (log: ${logPath})`,
    new Promise((resolveAddr, reject) => {
      child.once("exit", (code, signal) =>
        reject(new Error(`baton exited (${code ?? signal}) before listening:\n${log}`)),
      );
      const scan = () => {
        for (const line of log.split("\n")) {
          if (!line.startsWith("{")) continue;
          try {
            const fields = JSON.parse(line).fields ?? {};
            if (String(fields.message ?? "").startsWith("baton listening") && fields.addr) {
              child.stdout.off("data", scan);
              resolveAddr(fields.addr);
              return;
            }
          } catch {
            // a partial line; the next chunk completes it
          }
        }
      };
      child.stdout.on("data", scan);
      scan();
    }),
  ).catch(async (e) => {
    await baton.stop();
    throw e;
  });
  baton.url = `http://${addr}`;
  const healthy = await within(10_000, "baton /healthz", fetch(`${baton.url}/healthz`));
  if (!healthy.ok) throw new Error(`baton /healthz answered ${healthy.status}`);
  return baton;
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
};

/** Serves dist/ on 127.0.0.1 (an origin other than Baton's, as in production). */
export async function serveStatic(root) {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
    const file = join(root, path === "/" ? "index.html" : path);
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(r)) };
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_BIN)`);
  }
  return within(
    30_000,
    "Chromium to start",
    chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox"], timeout: 30_000 }),
  );
}

export function tempDir() {
  return mkdtempSync(join(tmpdir(), "baton-web-e2e-"));
}

