// Measures the console's first load: a fresh browser context (empty cache)
// opening /console on a real `baton` until the sign-in form is usable,
// over several runs; prints the median and the bytes sent.
//
//   node console/e2e/first-load.mjs    (BATON_BIN, default target/debug/baton)

import { gzipSync } from "node:zlib";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { launchBrowser, REPO, startBaton, tempDir } from "../../client-examples/web/e2e/harness.mjs";

const RUNS = 7;
const dir = tempDir();
const baton = await startBaton({ dir, webOrigin: "http://127.0.0.1:9" });
const browser = await launchBrowser();
const times = [];
let transferred = 0;
try {
  for (let i = 0; i < RUNS; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    let bytes = 0;
    page.on("response", async (r) => {
      const len = Number(r.headers()["content-length"] ?? 0);
      bytes += len;
    });
    const t0 = performance.now();
    await page.goto(`${baton.url}/console`);
    await page.getByLabel("API key").waitFor();
    times.push(performance.now() - t0);
    transferred = bytes;
    await context.close();
  }
} finally {
  await browser.close();
  await baton.stop();
}
times.sort((a, b) => a - b);
const dist = join(REPO, "console/dist");
const gz = ["index.html", "console.js", "console.css"].reduce((n, f) => n + gzipSync(readFileSync(join(dist, f)), { level: 9 }).length, 0);
console.log(`first load to a usable sign-in: median ${times[RUNS >> 1].toFixed(0)} ms (min ${times[0].toFixed(0)}, max ${times[RUNS - 1].toFixed(0)}) over ${RUNS} cold loads`);
console.log(`bundle: ${(gz / 1024).toFixed(0)} KB gzipped; sent over HTTP: ${(transferred / 1024).toFixed(0)} KB`);
