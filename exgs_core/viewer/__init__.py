"""``exgs view``: look at a splat file in a web browser, drawn by real web viewers, not by exgs.

The page (``exgs_core/viewer/web/``, bundled by ``bash scripts/build_viewer.sh`` into ``build/viewer/``) runs one of
three engines from npm, pinned in that script:

============== ================================================ ==============================================
engine         reads                                            default for
============== ================================================ ==============================================
``babylon``    .spz v2-v4 (Niantic's decoder, ``@adobe/spz``),  .spz
               .sog, .glb (KHR_gaussian_splatting), .ply,
               .splat
``playcanvas`` .sog, .glb (KHR_gaussian_splatting), .ply,       .sog, .glb
               compressed .ply
``spark``      .spz v2-v3 (not v4), .sog, .ply, compressed      .ply, compressed .ply, .splat
               .ply, .splat
============== ================================================ ==============================================

Coordinates: the page shows the file's own coordinates as stored (plus a glTF file's node transforms): no axis
conversion of its own. Views are exgs :class:`~exgs_core.camera.Camera` objects (OpenCV axes) turned into OpenGL
camera-to-world matrices (:meth:`Camera.to_opengl_c2w`) with the projection built from fx, fy, cx, cy, near, far, so
a view here and ``exgs render`` show the same pixels up to the engines' rasterisation (see ``tests/test_browser.py``
for the measured agreement). Default views are :func:`exgs_core.views.auto_views` of the file read in its stored
axes; ``cameras.json`` cameras must be in those axes too.

The server (:class:`ViewerServer`) is stdlib ``http.server`` bound to 127.0.0.1 on a free port (or ``--port``); it
serves the built page, the one file and its views, nothing else, and answers only requests addressed to
127.0.0.1/localhost. The page's Content-Security-Policy forbids loading anything from another origin.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import webbrowser
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..camera import Camera
from ..errors import BackendUnavailable, ExgsError, UnsupportedFormatError

__all__ = [
    "ENGINES",
    "BUILD_COMMAND",
    "ViewerError",
    "ViewerNotBuilt",
    "PortInUse",
    "BrowserError",
    "ViewerInput",
    "ViewerServer",
    "viewer_dir",
    "check_built",
    "viewer_format",
    "choose_engine",
    "view_dict",
    "prepare",
    "write_html",
    "capture",
    "add_view_parser",
    "cmd_view",
]

ENGINES = ("babylon", "playcanvas", "spark")
#: format (exgs_core.io names, plus "glb") -> engines that read it; the first is the default
ENGINES_FOR = {
    "spz": ("babylon", "spark"),
    "sog": ("playcanvas", "babylon", "spark"),
    "glb": ("playcanvas", "babylon"),
    "ply": ("spark", "playcanvas", "babylon"),
    "compressed_ply": ("spark", "playcanvas"),
    "splat": ("spark", "babylon"),
}
#: the name the file is served under (engines pick their parser by the extension)
SERVED_EXT = {"spz": ".spz", "sog": ".sog", "glb": ".glb", "ply": ".ply", "compressed_ply": ".ply", "splat": ".splat"}
BUILD_COMMAND = "bash scripts/build_viewer.sh"
PAGE_FILES = ("index.html", "boot.js", "babylon.js", "playcanvas.js", "spark.js", "spz.js")
WEB_SOURCES = Path(__file__).resolve().parent / "web"
CAPTURE_SCRIPT = Path(__file__).resolve().parent / "capture.mjs"
CHROMIUM = "/usr/bin/chromium"
MAX_HTML_INPUT_BYTES = 256 * 1024 * 1024  #: --html inlines the file as base64; browsers choke on much more
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


class ViewerError(ExgsError):
    """The web viewer cannot be used as asked (a port in use, a browser that failed)."""


class ViewerNotBuilt(BackendUnavailable):
    """The web page has not been built (``build/viewer/`` is missing or incomplete)."""


class PortInUse(ViewerError):
    """The port asked for is taken on 127.0.0.1."""


class BrowserError(ViewerError):
    """Headless Chromium (or node, which drives it) is missing, or the page failed or timed out in it."""


def viewer_dir() -> Path:
    """Folder of the built page: ``$EXGS_VIEWER_DIR``, else ``build/viewer`` of this checkout."""
    env = os.environ.get("EXGS_VIEWER_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "build" / "viewer"


def sources_sha256() -> str:
    """Hash of the page sources as ``scripts/build_viewer.sh`` records it (index.html, then web/*.js by name)."""
    h = hashlib.sha256()
    for p in [WEB_SOURCES / "index.html", *sorted(WEB_SOURCES.glob("*.js"))]:
        h.update(p.read_bytes())
    return h.hexdigest()


def check_built(directory: Path | None = None) -> dict:
    """The build's ``build.json`` (package versions, ``stale``: True when the sources changed since the build).

    Raises:
        ViewerNotBuilt: a page file is missing, naming it and the command that builds the page.
    """
    d = Path(directory) if directory else viewer_dir()
    missing = [f for f in (*PAGE_FILES, "build.json") if not (d / f).is_file()]
    if missing:
        raise ViewerNotBuilt(
            f"the web viewer is not built ({d} lacks {', '.join(missing)}); build it with: {BUILD_COMMAND} "
            "(needs node and npm; the npm registry is reached once)"
        )
    try:
        info = json.loads((d / "build.json").read_text())
    except (OSError, ValueError) as e:
        raise ViewerNotBuilt(f"{d / 'build.json'} is unreadable ({e}); rebuild with: {BUILD_COMMAND}") from None
    info["stale"] = info.get("sources_sha256") != sources_sha256()
    return info


# --------------------------------------------------------------------------- input


def viewer_format(path: str | os.PathLike) -> str:
    """The format of ``path`` as the viewer names it: an :data:`exgs_core.io.FORMATS` name, or ``"glb"``.

    Raises:
        UnsupportedFormatError: a file no engine can show (``.exgs``: the message says how to convert it).
        FormatError: the file cannot be read or is of no known format.
    """
    from .. import io as exgs_io

    p = Path(path)
    if p.is_file():
        with open(p, "rb") as f:
            if f.read(4) == b"glTF":
                return "glb"
    fmt = exgs_io.detect_format(p)
    if fmt not in ENGINES_FOR:
        raise UnsupportedFormatError(
            f"web viewers cannot show {fmt} files; write a standard one first, e.g. exgs convert {p.name} out.spz",
            p,
        )
    return fmt


def _is_spz_v4(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"NGSP"  # v4 has a plaintext header; v2/v3 are one gzip stream


def choose_engine(fmt: str, engine: str = "auto", path: str | os.PathLike | None = None) -> str:
    """The engine for a file of format ``fmt``: the default one for ``"auto"``, else ``engine`` when it reads it.

    Raises:
        UnsupportedFormatError: ``engine`` cannot read ``fmt`` (the message names those that can).
    """
    can = ENGINES_FOR.get(fmt, ())
    if engine == "auto":
        return can[0]
    if engine not in ENGINES:
        raise ValueError(f"engine must be auto or one of {ENGINES}, got {engine!r}")
    if engine not in can:
        raise UnsupportedFormatError(f"{engine} cannot show {fmt} files; use {' or '.join(can)}", path)
    if engine == "spark" and fmt == "spz" and path is not None and _is_spz_v4(Path(path)):
        raise UnsupportedFormatError(
            "spark reads SPZ v2/v3, not v4; use --engine babylon (or write --spz-version 3)", path
        )
    return engine


def view_dict(cam: Camera, *, target=None, up=None) -> dict:
    """A camera as the page takes it (JSON-able): size, intrinsics, near/far and the OpenGL camera-to-world
    ``c2w`` [4][4] rows; ``target`` [3] (orbit centre) and ``up`` [3] are optional."""
    v = {
        "name": cam.name,
        "width": cam.width,
        "height": cam.height,
        "fx": cam.fx,
        "fy": cam.fy,
        "cx": cam.cx,
        "cy": cam.cy,
        "near": cam.near,
        "far": min(cam.far, 1e6),  # a finite far plane: engines build depth ranges from it
        "c2w": cam.to_opengl_c2w().tolist(),
    }
    if target is not None:
        v["target"] = [float(x) for x in target]
    if up is not None:
        v["up"] = [float(x) for x in up]
    return v


def read_stored(path: str | os.PathLike, fmt: str):
    """The scene of ``path`` in its stored axes (what the page shows): SPZ and glTF without axis conversion."""
    from .. import io as exgs_io

    if fmt == "glb":
        from ..io.glb import read_glb

        return read_glb(path, axes="stored")
    if fmt == "spz":
        from ..io.spz import read_spz

        return read_spz(path, axes="stored")
    return exgs_io.load(path, format=fmt)


@dataclass
class ViewerInput:
    """What the page gets: the file (``data`` in memory, or streamed from ``path``), its format, the engine, the
    name it is served under, the views (:func:`view_dict` dicts) and page options."""

    path: Path
    fmt: str
    engine: str
    name: str
    views: list[dict]
    data: bytes | None = None
    options: dict = field(default_factory=dict)

    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size

    def read(self) -> bytes:
        return self.data if self.data is not None else self.path.read_bytes()


def _sog_bundle(path: Path) -> bytes:
    """An unbundled SOG (folder or meta.json) zipped in memory into a .sog bundle (stored, not recompressed)."""
    meta = path / "meta.json" if path.is_dir() else path
    folder = meta.parent
    doc = json.loads(meta.read_text())
    names = {"meta.json"}
    for key in ("means", "scales", "quats", "sh0", "shN"):
        for n in (doc.get(key) or {}).get("files", []):
            if "/" in n or "\\" in n or n in ("", ".", ".."):
                raise UnsupportedFormatError(f"texture name {n!r} is not a plain file name", meta)
            names.add(n)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for n in sorted(names):
            z.writestr(n, (folder / n).read_bytes() if n != "meta.json" else meta.read_bytes())
    return buf.getvalue()


def prepare(
    path: str | os.PathLike,
    *,
    engine: str = "auto",
    cameras: str | os.PathLike | list[Camera] | None = None,
    views: int = 8,
    size: tuple[int, int] = (960, 640),
) -> ViewerInput:
    """Everything the page needs for ``path``: format, engine, views (``cameras`` first: a cameras.json path or a
    list of cameras, then ``views`` automatic ones of ``size``), the bytes to serve.

    Raises:
        UnsupportedFormatError, FormatError: see :func:`viewer_format`, :func:`choose_engine`; CameraError: a bad
        cameras.json.
    """
    from ..views import auto_views, load_cameras_json, scene_frame

    p = Path(path)
    fmt = viewer_format(p)
    eng = choose_engine(fmt, engine, p)
    scene = read_stored(p, fmt)
    frame = scene_frame(scene)
    cams: list[Camera] = []
    if cameras is not None:
        cams += load_cameras_json(cameras) if isinstance(cameras, (str, os.PathLike)) else list(cameras)
    if views:
        cams += auto_views(scene, views, size[0], size[1], split="eval")
    vs = [view_dict(c, target=frame.center, up=frame.up) for c in cams]
    raw = (
        p.name.split(".")[0]
        if p.is_file() and not p.name.endswith("meta.json")
        else (p if p.is_dir() else p.parent).name
    )
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in raw) or "scene"
    data = _sog_bundle(p) if fmt == "sog" and (p.is_dir() or p.name.endswith("meta.json")) else None
    opts = {"aa": "1"} if scene.antialiased else {}
    return ViewerInput(p, fmt, eng, f"{stem}{SERVED_EXT[fmt]}", vs, data, opts)


# --------------------------------------------------------------------------- server


class ViewerServer:
    """The local server of one :class:`ViewerInput`: ``with ViewerServer(inp) as s: print(s.url)``.

    Binds 127.0.0.1 (``port`` 0: a free one). Routes: ``/`` (the page), the page's bundles, ``/file/<name>``,
    ``/views.json``; anything else is 404, and a request whose Host is not 127.0.0.1/localhost is refused (403).

    Raises:
        PortInUse: ``port`` is taken. ViewerNotBuilt: see :func:`check_built`.
    """

    def __init__(self, inp: ViewerInput, *, port: int = 0, directory: Path | None = None, quiet: bool = True):
        self.inp = inp
        self.directory = Path(directory) if directory else viewer_dir()
        self.build = check_built(self.directory)
        routes: dict[str, tuple[str, object]] = {}
        for f in PAGE_FILES:
            routes["/" + f] = (_CONTENT_TYPES[Path(f).suffix], self.directory / f)
        routes["/"] = routes["/index.html"]
        routes["/views.json"] = ("application/json", json.dumps(inp.views).encode())
        routes["/file/" + urllib.parse.quote(inp.name)] = ("application/octet-stream", inp)
        handler = _make_handler(routes, quiet)
        try:
            self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as e:
            if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise PortInUse(
                    f"port {port} is in use on 127.0.0.1; pick another with --port, or leave --port out for a free one"
                ) from None
            raise ViewerError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def page_url(self, **params) -> str:
        """URL of the page for this file; ``params`` are extra page parameters (``still``, ``view``, ``bg``, ...)."""
        q = {"file": "/file/" + self.inp.name, "views": "/views.json", "engine": self.inp.engine}
        q.update(self.inp.options)
        q.update({k: v for k, v in params.items() if v is not None})
        return f"{self.origin}/?{urllib.parse.urlencode(q)}"

    @property
    def url(self) -> str:
        return self.page_url()

    def start(self) -> ViewerServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="exgs-view", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _make_handler(routes: dict, quiet: bool):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "exgs-view"
        sys_version = ""

        def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
            if not quiet:
                sys.stderr.write(f"exgs view: {format % args}\n")

        def _send(self, body: bool) -> None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "localhost"):  # DNS rebinding: only pages addressed to this machine
                self.send_error(403)
                return
            path = urllib.parse.urlsplit(self.path).path
            if path == "/favicon.ico":
                self.send_response(204)
                self.end_headers()
                return
            route = routes.get(path)
            if route is None:
                self.send_error(404)
                return
            ctype, src = route
            if isinstance(src, bytes):
                size = len(src)
            elif isinstance(src, ViewerInput):
                size = src.size()
            else:
                size = src.stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            if not body:
                return
            try:
                if isinstance(src, bytes):
                    self.wfile.write(src)
                elif isinstance(src, ViewerInput) and src.data is not None:
                    self.wfile.write(src.data)
                else:
                    with open(src.path if isinstance(src, ViewerInput) else src, "rb") as f:
                        shutil.copyfileobj(f, self.wfile, 1 << 20)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser went away

        def do_GET(self):  # noqa: N802
            self._send(True)

        def do_HEAD(self):  # noqa: N802
            self._send(False)

    return Handler


# --------------------------------------------------------------------------- self-contained page


def write_html(inp: ViewerInput, out: str | os.PathLike, *, directory: Path | None = None) -> int:
    """Write one .html holding the page, its engine and the file (base64), openable without a server.

    Returns the bytes written. Raises ViewerNotBuilt; ViewerError when the file is larger than
    :data:`MAX_HTML_INPUT_BYTES`; OutputError when ``out`` cannot be written.
    """
    from ..io.atomic import atomic_write, check_output_path

    d = Path(directory) if directory else viewer_dir()
    check_built(d)
    check_output_path(out)
    if inp.size() > MAX_HTML_INPUT_BYTES:
        raise ViewerError(
            f"{inp.size():,} bytes is too large to inline in one page (at most {MAX_HTML_INPUT_BYTES:,}); "
            "use exgs view without --html",
            inp.path,
        )
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    engine_js = (d / f"{inp.engine}.js").read_bytes()
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # nothing from the network: everything is inline, the engine and the decoder run from blob: URLs
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline' "
        "'unsafe-eval' 'wasm-unsafe-eval' blob:; worker-src blob: data:; connect-src blob: data:; "
        "img-src blob: data:; style-src 'unsafe-inline'\">",
        f"<title>exgs view: {_html_escape(inp.path.name)}</title>",
        "<style>html,body{margin:0;height:100%;overflow:hidden;background:#000}#c{display:block}"
        "#hud{position:fixed;left:8px;bottom:8px;color:#ddd;font:12px sans-serif;text-shadow:0 0 2px #000}</style>",
        '</head><body><canvas id="c"></canvas><div id="hud">loading...</div>',
        f'<script id="exgs-views" type="application/json">{_json_for_script(inp.views)}</script>',
        f'<script id="exgs-data" type="text/plain" data-name="{_html_escape(inp.name)}">{b64(inp.read())}</script>',
        f'<script id="exgs-engine" type="text/plain">{b64(engine_js)}</script>',
    ]
    if inp.engine == "babylon":
        parts.append(f'<script id="exgs-spz" type="text/plain">{b64((d / "spz.js").read_bytes())}</script>')
    parts.append(
        '<script type="module">const t=document.getElementById("exgs-engine").textContent.trim();'
        "const b=Uint8Array.from(atob(t),c=>c.charCodeAt(0));"
        'import(URL.createObjectURL(new Blob([b],{type:"text/javascript"})));</script></body></html>\n'
    )
    text = "\n".join(parts).encode("utf-8")
    with atomic_write(out) as f:
        f.write(text)
    return len(text)


def _html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _json_for_script(obj) -> str:
    return json.dumps(obj).replace("<", "\\u003c")  # no "</script>" can end the element early


# --------------------------------------------------------------------------- headless capture


def capture(jobs: list[dict], *, timeout: float = 60, chromium: str = CHROMIUM, node: str | None = None) -> dict:
    """Screenshots of page URLs in one headless Chromium (software WebGL), driven by ``capture.mjs`` under node.

    ``jobs``: ``{"url", "out" (PNG path), "width", "height"}`` each; use ``still=1`` pages. Returns the report
    (``jobs``: per job ``state`` (the page's status: engine, version, numSplats, timings), ``requests`` (every URL
    the page asked for), ``console``, ``seconds``, ``error``), whatever happened; a job that failed has ``error``.

    Raises:
        BrowserError: Chromium or node is missing, or the browser could not be driven at all.
    """
    node = node or shutil.which("node")
    if not node:
        raise BrowserError("node is not installed (it drives headless Chromium): apt-get install nodejs")
    if not Path(chromium).exists():
        raise BrowserError(f"{chromium} is missing: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="exgs-capture-") as d:
        jobs_path, report_path = Path(d) / "jobs.json", Path(d) / "report.json"
        jobs_path.write_text(json.dumps(jobs))
        cmd = [node, "--experimental-websocket", "--no-warnings", str(CAPTURE_SCRIPT), "--jobs", str(jobs_path)]
        cmd += ["--chromium", chromium, "--timeout", str(timeout), "--report", str(report_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * (len(jobs) + 1) + 30)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"headless Chromium did not finish {len(jobs)} page(s) in time") from None
        if not report_path.exists():
            raise BrowserError(f"headless Chromium could not be driven: {proc.stderr.strip()[-2000:]}")
        report = json.loads(report_path.read_text())
    if report.get("error"):
        raise BrowserError(f"headless Chromium failed: {report['error']}")
    return report


# --------------------------------------------------------------------------- command line


def add_view_parser(subparsers) -> None:
    """Add ``exgs view`` to the CLI's subparsers."""
    from ..cli import float_range, parse_size

    sp = subparsers.add_parser(
        "view",
        help="look at a splat file in your web browser (Babylon.js, PlayCanvas or Spark; served from 127.0.0.1)",
        description="Serve FILE and a web viewer page on 127.0.0.1 and open it in the browser. Drag to orbit, "
        "right-drag to pan, wheel to zoom, keys 1-9 switch views. The page is built once with "
        f"'{BUILD_COMMAND}'.",
    )
    sp.add_argument("file", metavar="FILE", help=".spz, .sog, .glb, .ply, .compressed.ply or .splat")
    sp.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    sp.add_argument("--no-browser", action="store_true", help="print the URL only, do not open a browser")
    sp.add_argument(
        "--camera",
        "--cameras",
        dest="cameras",
        metavar="cameras.json",
        help="3DGS cameras.json: its views first (in the file's stored axes), then automatic ones",
    )
    sp.add_argument(
        "--engine", choices=("auto", *ENGINES), default="auto", help="web viewer engine (default by format)"
    )
    sp.add_argument("--views", type=int, default=8, help="automatic views (default 8)")
    sp.add_argument(
        "--size",
        type=parse_size,
        default=(960, 640),
        metavar="WxH",
        help="view size for --screenshot (default 960x640)",
    )
    sp.add_argument(
        "--background",
        type=float_range(0.0, 1.0),
        nargs=3,
        default=(0.0, 0.0, 0.0),
        metavar=("R", "G", "B"),
        help="background colour in [0, 1] (default black)",
    )
    sp.add_argument("--html", metavar="OUT.html", help="write one self-contained page (file inlined) and exit")
    sp.add_argument(
        "--screenshot", metavar="OUT.png", help="render the first view in headless Chromium to a PNG and exit"
    )
    sp.add_argument("--timeout", type=float, default=120, help="seconds --screenshot waits for the page (default 120)")
    sp.set_defaults(func=cmd_view)


def cmd_view(args) -> int:
    """``exgs view``: serve, write --html, or --screenshot (see :func:`add_view_parser`)."""
    inp = prepare(args.file, engine=args.engine, cameras=args.cameras, views=max(args.views, 0), size=args.size)
    if not inp.views:
        raise ViewerError("no views: give --camera or --views >= 1")
    bg = ",".join(f"{c:g}" for c in args.background)
    if args.html:
        n = write_html(inp, args.html)
        print(f"exgs view: wrote {args.html} ({n:,} bytes, {inp.engine}); open it in a browser")
        return 0
    info = check_built()
    if info["stale"]:
        print(
            f"exgs view: note: the built page is older than its sources; rebuild with {BUILD_COMMAND}", file=sys.stderr
        )
    with ViewerServer(inp, port=args.port) as srv:
        if args.screenshot:
            from ..io.atomic import check_output_path

            check_output_path(args.screenshot)
            v = inp.views[0]
            url = srv.page_url(still="1", bg=bg, view=json.dumps(v))
            rep = capture(
                [{"url": url, "out": os.fspath(args.screenshot), "width": v["width"], "height": v["height"]}],
                timeout=args.timeout,
            )
            job = rep["jobs"][0]
            if job.get("error"):
                raise BrowserError(f"{inp.engine}: {job['error']}", inp.path)
            st = job["state"]
            print(f"exgs view: wrote {args.screenshot} ({st['engine']} {st['version']}, {st['numSplats']} splats)")
            return 0
        url = srv.page_url(bg=bg)
        print(f"exgs view: {inp.path} with {inp.engine} at {url}\nexgs view: press Ctrl-C to stop", flush=True)
        if not args.no_browser:
            webbrowser.open(url)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("exgs view: stopped", file=sys.stderr)
    return 0
