// Screenshot of the exgs viewer page in headless Chromium, driven over the DevTools protocol (no npm packages).
//
//   node --experimental-websocket capture.mjs --jobs jobs.json [--chromium /usr/bin/chromium] [--timeout 60]
//        [--report report.json]
//
// jobs.json: [{"url": URL, "out": "shot.png", "width": W, "height": H}, ...], run one after another in one browser
// (--timeout is per job).
// Starts Chromium headless with software WebGL (SwiftShader through ANGLE) in a fresh profile, opens URL, waits until
// the page says window.__exgs.state is "ready" (the splats are loaded and the image has stopped changing) or
// "error", then writes the canvas as PNG (exact canvas pixels, W x H) and a JSON report: the page's state, console
// messages, every URL the page requested (so a caller can check that nothing left the machine) and timings.
// The report holds one entry per job. Exit status: 0 every job ready, 2 a page reported an error, 3 a page timed
// out, 1 anything else (message on stderr).

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function parseArgs(argv) {
  const out = { chromium: "/usr/bin/chromium", timeout: 60 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!["chromium", "timeout", "jobs", "report"].includes(key)) throw new Error(`unknown option ${argv[i]}`);
    out[key] = key === "timeout" ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!out.jobs) throw new Error("need --jobs jobs.json");
  out.jobs = JSON.parse(readFileSync(out.jobs, "utf8"));
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForPort(profile, proc, deadline) {
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`chromium exited early with status ${proc.exitCode}`);
    try {
      const [port] = readFileSync(join(profile, "DevToolsActivePort"), "utf8").split("\n");
      if (port) return Number(port);
    } catch {
      // not written yet
    }
    await sleep(50);
  }
  throw new Error("chromium did not open its DevTools port in time");
}

class Cdp {
  constructor(ws) {
    this.ws = ws;
    this.next = 1;
    this.pending = new Map();
    this.handlers = [];
    ws.addEventListener("message", (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.id && this.pending.has(msg.id)) {
        const { resolve, reject } = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error) reject(new Error(`${msg.error.message} (${msg.error.code})`));
        else resolve(msg.result);
      } else if (msg.method) {
        for (const h of this.handlers) h(msg.method, msg.params);
      }
    });
  }
  static open(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.addEventListener("open", () => resolve(new Cdp(ws)));
      ws.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)));
    });
  }
  send(method, params = {}) {
    const id = this.next++;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }
  on(handler) {
    this.handlers.push(handler);
  }
}

// Ask Chromium to quit (it then stops its helper processes, which keep writing to the profile while they live), and
// wait for it; kill it when it does not go.
async function closeBrowser(proc, browserWs) {
  const exited = new Promise((r) => (proc.exitCode !== null ? r() : proc.once("exit", r)));
  if (browserWs && proc.exitCode === null) {
    try {
      const cdp = await Cdp.open(browserWs);
      cdp.send("Browser.close").catch(() => {});
    } catch {
      // fall through to the signals
    }
    await Promise.race([exited, sleep(5000)]);
  }
  if (proc.exitCode === null) proc.kill("SIGTERM");
  await Promise.race([exited, sleep(3000)]);
  if (proc.exitCode === null) proc.kill("SIGKILL");
  await Promise.race([exited, sleep(1000)]);
}

// One job: open the page, wait for ready/error, write the canvas. Returns its report entry.
async function runJob(cdp, job, timeoutS, log) {
  const t0 = Date.now();
  const entry = { url: job.url, out: job.out, state: null, console: [], requests: [] };
  log.current = entry;
  await cdp.send("Emulation.setDeviceMetricsOverride", {
    width: job.width,
    height: job.height,
    deviceScaleFactor: 1,
    mobile: false,
  });
  await cdp.send("Page.navigate", { url: job.url });
  const deadline = t0 + timeoutS * 1000;
  let state = null;
  while (Date.now() < deadline) {
    const r = await cdp.send("Runtime.evaluate", {
      expression: "window.__exgs ? JSON.stringify(window.__exgs.info()) : null",
      returnByValue: true,
    });
    state = r.result.value ? JSON.parse(r.result.value) : null;
    if (state && (state.state === "ready" || state.state === "error")) break;
    await sleep(100);
  }
  entry.state = state;
  entry.seconds = (Date.now() - t0) / 1000;
  if (!state || (state.state !== "ready" && state.state !== "error")) {
    entry.error = `timed out after ${timeoutS} s waiting for the page (last state: ${JSON.stringify(state)})`;
    entry.code = 3;
  } else if (state.state === "error") {
    entry.error = `the page reported an error: ${state.error}`;
    entry.code = 2;
  } else {
    const shot = await cdp.send("Runtime.evaluate", {
      expression: "window.__exgs.capture()",
      awaitPromise: true,
      returnByValue: true,
    });
    const dataUrl = shot.result.value;
    if (typeof dataUrl !== "string" || !dataUrl.startsWith("data:image/png;base64,")) {
      entry.error = "the page returned no PNG";
      entry.code = 1;
    } else {
      writeFileSync(job.out, Buffer.from(dataUrl.slice("data:image/png;base64,".length), "base64"));
      entry.code = 0;
    }
  }
  return entry;
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const profile = mkdtempSync(join(tmpdir(), "exgs-chromium-"));
  const first = opt.jobs[0] || { width: 640, height: 480 };
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    `--window-size=${first.width},${first.height}`,
    `--user-data-dir=${profile}`,
    "--remote-debugging-port=0",
    "about:blank",
  ];
  const proc = spawn(opt.chromium, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr.on("data", (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const report = { jobs: [], timings: {} };
  const log = { current: null };
  let code = 0;
  let browserWs = null;
  try {
    const port = await waitForPort(profile, proc, t0 + opt.timeout * 1000);
    browserWs = (await (await fetch(`http://127.0.0.1:${port}/json/version`)).json()).webSocketDebuggerUrl;
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const page = targets.find((t) => t.type === "page");
    if (!page) throw new Error("no page target");
    const cdp = await Cdp.open(page.webSocketDebuggerUrl);
    cdp.on((method, p) => {
      const e = log.current;
      if (!e) return;
      if (method === "Network.requestWillBeSent") e.requests.push(p.request.url.slice(0, 200));
      else if (method === "Runtime.consoleAPICalled")
        e.console.push(`${p.type}: ${p.args.map((a) => a.value ?? a.description ?? "").join(" ")}`.slice(0, 500));
      else if (method === "Runtime.exceptionThrown")
        e.console.push(`exception: ${p.exceptionDetails.exception?.description ?? p.exceptionDetails.text}`);
      else if (method === "Log.entryAdded") e.console.push(`${p.entry.level}: ${p.entry.text}`.slice(0, 500));
    });
    await Promise.all([cdp.send("Network.enable"), cdp.send("Runtime.enable"), cdp.send("Log.enable")]);
    report.timings.browser_s = (Date.now() - t0) / 1000;
    for (const job of opt.jobs) {
      const entry = await runJob(cdp, job, opt.timeout, log);
      report.jobs.push(entry);
      if (entry.code) {
        process.stderr.write(`capture: ${job.url.slice(0, 120)}: ${entry.error}\n`);
        code = code || entry.code;
      }
    }
    log.current = null;
  } catch (e) {
    report.error = String(e.message || e);
    if (stderr) report.chromium_stderr = stderr;
    process.stderr.write(`capture: ${report.error}\n`);
    code = 1;
  } finally {
    report.timings.total_s = (Date.now() - t0) / 1000;
    if (opt.report) writeFileSync(opt.report, JSON.stringify(report, null, 1));
    await closeBrowser(proc, browserWs);
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    } catch (e) {
      process.stderr.write(`capture: could not remove ${profile}: ${e.message}\n`);
    }
  }
  process.exit(code);
}

main().catch((e) => {
  process.stderr.write(`capture: ${e.message || e}\n`);
  process.exit(1);
});
