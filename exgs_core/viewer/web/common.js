// What the Spark and PlayCanvas entries share: the page's parameters, exgs views -> OpenGL matrices, a small orbit
// control, the status protocol the headless check reads (window.__exgs), and the splat bytes (fetched from the
// local server or inlined in a self-contained page).
//
// Views (view.json, or the ``view`` URL parameter): {width, height, fx, fy, cx, cy, near, far, c2w, target?, up?,
// name?} where c2w is the camera-to-world matrix [4][4] (rows) in OpenGL camera axes (+x right, +y up, looking along
// -z), i.e. exgs Camera.to_opengl_c2w(): our OpenCV cameras with y and z flipped on the camera side. World
// coordinates are the file's own, as stored: the page adds no rotation of its own.

export const params = new URLSearchParams(location.search);
export const still = params.get("still") === "1";

export function background() {
  const bg = (params.get("bg") || "0,0,0").split(",").map(Number);
  if (bg.length !== 3 || bg.some((v) => !(v >= 0 && v <= 1))) throw new Error("bg must be r,g,b in 0..1");
  return bg;
}

export function base64Bytes(text) {
  const bin = atob(text.trim());
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

// The splat file: {bytes: Uint8Array, name}. Inline data (a self-contained page) wins over the URL.
export async function loadBytes() {
  const inline = document.getElementById("exgs-data");
  if (inline) return { bytes: base64Bytes(inline.textContent), name: inline.dataset.name };
  const url = params.get("file");
  if (!url) throw new Error("no file given (?file=URL)");
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot fetch ${url}: HTTP ${res.status}`);
  return { bytes: new Uint8Array(await res.arrayBuffer()), name: params.get("name") || url.split("/").pop() };
}

// The views: a list, from inline JSON, the ``view`` parameter (one view, JSON) or the ``views`` URL.
export async function loadViews() {
  const inline = document.getElementById("exgs-views");
  if (inline) return JSON.parse(inline.textContent);
  if (params.get("view")) return [JSON.parse(params.get("view"))];
  const url = params.get("views");
  if (!url) return [];
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot fetch ${url}: HTTP ${res.status}`);
  return res.json();
}

// OpenGL projection [4][4] (rows) from pixel intrinsics: exactly the pinhole exgs renders (principal point included).
export function projection(v, width, height) {
  const { fx, fy, cx, cy, near: n, far: f } = v;
  return [
    [(2 * fx) / width, 0, 1 - (2 * cx) / width, 0],
    [0, (2 * fy) / height, (2 * cy) / height - 1, 0],
    [0, 0, -(f + n) / (f - n), (-2 * f * n) / (f - n)],
    [0, 0, -1, 0],
  ];
}

// A view rescaled to another canvas size, keeping the vertical field of view and the pixel aspect.
export function fitView(v, width, height) {
  const s = height / v.height;
  return { ...v, fy: v.fy * s, fx: v.fx * s, cx: (v.cx / v.width) * width, cy: (v.cy / v.height) * height, width, height };
}

const sub = (a, b) => a.map((x, i) => x - b[i]);
const add = (a, b) => a.map((x, i) => x + b[i]);
const scale = (a, s) => a.map((x) => x * s);
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const norm = (a) => Math.sqrt(dot(a, a));
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
// Rodrigues: vector p rotated by angle t about unit axis k.
const rotate = (p, k, t) =>
  add(add(scale(p, Math.cos(t)), scale(cross(k, p), Math.sin(t))), scale(k, dot(k, p) * (1 - Math.cos(t))));

// Orbit control on a view: drag to orbit about the target (around the view's up), right-drag or shift-drag to pan,
// wheel to zoom. Works on the c2w matrix only, so it is the same for every engine.
export class Orbit {
  constructor(canvas, onChange) {
    this.onChange = onChange;
    let last = null;
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    canvas.addEventListener("pointerdown", (e) => {
      last = [e.clientX, e.clientY, e.button === 2 || e.shiftKey];
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointerup", () => (last = null));
    canvas.addEventListener("pointermove", (e) => {
      if (!last || !this.v) return;
      const [dx, dy] = [e.clientX - last[0], e.clientY - last[1]];
      if (last[2]) this.pan(dx, dy);
      else this.orbit(-dx * 0.005, -dy * 0.005);
      last = [e.clientX, e.clientY, last[2]];
    });
    canvas.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        if (this.v) this.dolly(Math.exp(e.deltaY * 0.001));
      },
      { passive: false },
    );
  }
  set(v) {
    const m = v.c2w;
    this.pos = [m[0][3], m[1][3], m[2][3]];
    this.axes = [0, 1, 2].map((j) => [m[0][j], m[1][j], m[2][j]]); // right, up, back
    this.target = v.target || add(this.pos, scale(this.axes[2], -1));
    this.up = v.up || this.axes[1];
    this.v = v;
    this.emit();
  }
  emit() {
    const [r, u, b] = this.axes;
    const c2w = [0, 1, 2].map((i) => [r[i], u[i], b[i], this.pos[i]]).concat([[0, 0, 0, 1]]);
    this.v = { ...this.v, c2w };
    this.onChange(this.v);
  }
  orbit(yaw, pitch) {
    const spin = (k, t) => {
      this.pos = add(this.target, rotate(sub(this.pos, this.target), k, t));
      this.axes = this.axes.map((a) => rotate(a, k, t));
    };
    spin(this.up, yaw);
    spin(this.axes[0], pitch);
    this.emit();
  }
  pan(dx, dy) {
    const d = (norm(sub(this.pos, this.target)) * 2) / this.v.fy;
    const move = add(scale(this.axes[0], -dx * d), scale(this.axes[1], dy * d));
    this.pos = add(this.pos, move);
    this.target = add(this.target, move);
    this.emit();
  }
  dolly(f) {
    this.pos = add(this.target, scale(sub(this.pos, this.target), f));
    this.emit();
  }
}

// FNV-1a over the pixels: the settle test compares frames by this.
function hash(px) {
  let h = 2166136261;
  for (let i = 0; i < px.length; i += 3) h = Math.imul(h ^ px[i], 16777619);
  return h >>> 0;
}

// Run an engine: load, show, report. ``engine.init(canvas, file, bg)`` returns {numSplats, setView(v), render(),
// gl}; it owns the canvas size. In still mode (the headless check) the canvas is the first view's exact size and
// the page is "ready" once the image has stopped changing (the engines sort in workers, so the first frames can be
// unsorted): the same pixels for 8 frames in a row spanning at least 500 ms.
export async function run(engine) {
  const status = { state: "loading", error: null, engine: engine.name, version: engine.version, frames: 0 };
  const t0 = performance.now();
  let api = null;
  window.__exgs = {
    info: () => status,
    capture: async () => api.canvas.toDataURL("image/png"),
  };
  const fail = (e) => {
    status.state = "error";
    status.error = String((e && (e.message || e.reason)) || e);
    const hud = document.getElementById("hud");
    if (hud) hud.textContent = `exgs view: ${status.error}`;
  };
  window.addEventListener("error", (e) => fail(e.error || e.message));
  window.addEventListener("unhandledrejection", (e) => fail(e.reason));
  // The page's Content-Security-Policy blocks every request off its own origin; an engine that tries one fails.
  document.addEventListener("securitypolicyviolation", (e) =>
    fail(
      /^(https?|wss?):/.test(e.blockedURI)
        ? `${engine.name} tried to load ${e.blockedURI}; the viewer loads nothing from elsewhere`
        : `${engine.name} did something the page's policy blocks (${e.violatedDirective}: ${e.blockedURI})`,
    ),
  );
  try {
    const canvas = document.getElementById("c");
    const [file, views] = await Promise.all([loadBytes(), loadViews()]);
    status.file = file.name;
    status.bytes = file.bytes.length;
    if (!views.length) throw new Error("no view given (the exgs server writes view.json)");
    const first = views[0];
    const size = () => (still ? [first.width, first.height] : [window.innerWidth, window.innerHeight]);
    const [w0, h0] = size();
    canvas.width = w0;
    canvas.height = h0;
    api = await engine.init(canvas, file, background());
    api.canvas = canvas;
    status.numSplats = api.numSplats;
    status.loadMs = Math.round(performance.now() - t0);
    let view = first;
    const show = (v) => {
      view = v;
      const [w, h] = size();
      api.setView(fitView(v, w, h));
    };
    if (!still) {
      const orbit = new Orbit(canvas, show);
      orbit.set(first);
      window.addEventListener("resize", () => show(view));
      window.addEventListener("keydown", (e) => {
        const i = e.key === "r" ? 0 : Number(e.key) - 1;
        if (i >= 0 && i < views.length) orbit.set(views[i]);
      });
      const hud = document.getElementById("hud");
      hud.textContent =
        `${file.name}: ${api.numSplats} splats, ${engine.name} ${engine.version}. ` +
        `Drag: orbit, right-drag: pan, wheel: zoom, 1-${Math.min(views.length, 9)}: views, r: reset.`;
    } else {
      show(first);
    }
    const gl = api.gl;
    const px = new Uint8Array(w0 * h0 * 4);
    let lastHash = null;
    let same = 0;
    let sameSince = 0;
    const busy = () => (api.busy ? api.busy() : false);
    const frame = () => {
      const t = performance.now();
      const wasBusy = busy();
      api.render();
      status.frames++;
      if (still && status.state === "loading") {
        gl.readPixels(0, 0, w0, h0, gl.RGBA, gl.UNSIGNED_BYTE, px);
        const now = performance.now();
        status.frameMs = Math.round(now - t);
        const h = hash(px);
        if (h === lastHash && !wasBusy && !busy()) same++;
        else [lastHash, same, sameSince] = [h, 0, now];
        // An engine that says when its sort is done needs two repeats; others 8 repeats over 500 ms.
        if (api.busy ? same >= 2 : same >= 8 && now - sameSince >= 500) {
          status.state = "ready";
          status.settleMs = Math.round(now - t0) - status.loadMs;
          return; // a still page stops drawing: the preserved drawing buffer holds the image capture() reads
        }
      } else if (status.state === "loading") {
        status.state = "ready";
      }
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  } catch (e) {
    fail(e);
  }
}
