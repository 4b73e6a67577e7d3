"""Client side of the worker, and the in-process backend with the same interface.

    from exgs_core.worker import WorkerClient, LocalBackend
    w = WorkerClient(python="/path/to/venv/bin/python", weights=None)   # started on the first request
    rgb = w.restore(res.rgb, res.alpha)                                # frames travel through shared memory
    raw, restored = w.render_restore(scene, camera)                    # scene sent once, cached by key
    w.stop()

``WorkerClient`` spawns ``python -m exgs_core.worker`` with pipes for stdin/stdout (nothing listens on a network
or a named socket), owns the shared-memory segments, restarts the worker on the next request after a crash and
raises :class:`WorkerCrashed` (with the worker's exit status and the end of its log) for the request that was
running. It is thread safe (requests are serialised). ``LocalBackend`` does the same work in this process.

A request given ``cancel`` returns None as soon as ``cancel()`` is true; the worker finishes it anyway, into a
segment the client no longer uses, so what it writes late never lands on a later request's arrays. The worker
runs in a private folder of this process (0700, removed at exit), so files other users put in the shared temp
folder never reach its ``sys.path``. Errors of :mod:`exgs_core.errors` raised in the worker come back as the
same class (also a :class:`WorkerError`), with the same path and detail.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors
from ..errors import ExgsError
from . import protocol
from .server import SCENE_FIELDS, camera_to_dict, scene_digest


class WorkerError(ExgsError):
    """The worker could not be started, or a request failed inside it (the message says what and where)."""


class WorkerNotFound(WorkerError):
    """No Python for the worker is configured or found (the worker environment has not been created)."""


class WorkerCrashed(WorkerError):
    """The worker process died during a request; the next request starts a new one."""


_REMOTE_CLASSES: dict[type, Any] = {}


def _remote_error(op: str, reply: dict) -> WorkerError:
    """The exception for an error reply. An error of :mod:`exgs_core.errors` raised in the worker (say
    OutputError for a missing output folder) comes back as a subclass of both WorkerError and that class, with
    the same path and detail, so it is caught and reported as it would be in this process."""
    typ, msg, path = reply.get("type"), reply.get("error"), reply.get("path")
    cls = getattr(errors, typ, None) if reply.get("exgs_error") and isinstance(typ, str) else None
    if (
        isinstance(cls, type)
        and issubclass(cls, ExgsError)
        and cls is not ExgsError
        and isinstance(reply.get("detail"), str)
    ):
        both = _REMOTE_CLASSES.get(cls)
        if both is None:
            both = _REMOTE_CLASSES[cls] = type(
                f"Worker{cls.__name__}", (WorkerError, cls), {"__module__": __name__, "__doc__": cls.__doc__}
            )
        e = WorkerError.__new__(both)
        ExgsError.__init__(e, reply["detail"], path if isinstance(path, str) else None)
        if issubclass(cls, errors.FormatError):
            e.offset, e.field = reply.get("offset"), reply.get("field")
        return e
    e = WorkerError(f"worker {op} failed: {typ}: {msg}")
    if isinstance(path, str):
        e.path = path
    return e


# ------------------------------------------------------------------------------------------- which Python
def own_python() -> str | None:
    """This process's Python executable (Blender's bundled one when running inside Blender), or None."""
    exe = sys.executable or ""
    name = os.path.basename(exe).lower()
    if name.startswith("python") and os.path.isfile(exe):
        return exe
    base = getattr(sys, "_base_executable", "") or ""
    if os.path.basename(base).lower().startswith("python") and os.path.isfile(base):
        return base
    v = "{}.{}".format(*sys.version_info[:2])
    for cand in (
        Path(sys.prefix) / "bin" / f"python{v}",
        Path(sys.prefix) / "bin" / "python3",
        Path(sys.prefix) / "bin" / "python.exe",
    ):
        if cand.is_file():
            return str(cand)
    return None


def repo_venv_python() -> str | None:
    """``.venv``'s Python of the source checkout this exgs_core comes from (development setups), or None."""
    root = Path(__file__).resolve().parents[2]
    for cand in (root / ".venv" / "bin" / "python", root / ".venv" / "Scripts" / "python.exe"):
        if cand.is_file():
            return str(cand)
    return None


def has_torch_here() -> bool:
    return importlib.util.find_spec("torch") is not None


def resolve_python(configured: str | None = None) -> str:
    """The worker's Python: ``configured`` when given; else $EXGS_WORKER_PYTHON; else this process's own Python
    when torch is importable here; else the worker environment at its default place
    (:func:`exgs_core.worker.environment.default_dir`); else the source checkout's .venv (development).

    Raises:
        WorkerNotFound: none of them exists (the message says how to create the worker environment).
        WorkerError: a configured Python does not exist or is not executable.
    """
    from .environment import default_dir, default_python

    if configured:
        p = os.path.expanduser(configured)
        if not os.path.isfile(p) or not os.access(p, os.X_OK):
            raise WorkerError("the configured worker Python does not exist or is not executable", p)
        return p
    env = os.environ.get("EXGS_WORKER_PYTHON")
    if env:
        return resolve_python(env)
    own = own_python()
    if own and has_torch_here():
        return own
    for found in (default_python(), repo_venv_python()):
        if found:
            return found
    raise WorkerNotFound(
        f"no worker environment with torch for restoration (none at {default_dir()}): create it "
        "with Preferences > Add-ons > ExGS > Set Up Worker, or `python -m "
        "exgs_core.worker.environment` shows the two commands"
    )


def scene_key(scene) -> str:
    """Content hash of a scene's arrays (what the worker caches scenes by, and checks an upload against)."""
    return scene_digest({f: getattr(scene, f) for f in SCENE_FIELDS}, scene.antialiased)


_PRIVATE_DIR: str | None = None
_PRIVATE_LOCK = threading.Lock()


def _is_private_dir(path: str) -> bool:
    """``path`` is a real folder (not a link) of ours that nobody else can write to."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        return False
    return True


def _remove_private_dir(path: str) -> None:
    link = os.path.join(path, "exgs_core")
    try:
        if os.path.islink(link):
            os.unlink(link)
        os.rmdir(path)
    except OSError:
        pass


def _private_dir() -> str:
    """This process's own folder for its workers (created 0700 by mkdtemp under a random name, removed at
    exit): their working directory and the home of the ``exgs_core`` link, so nothing another user could
    have put in the shared temp folder lands on a worker's sys.path."""
    global _PRIVATE_DIR
    with _PRIVATE_LOCK:
        if _PRIVATE_DIR is None or not _is_private_dir(_PRIVATE_DIR):
            _PRIVATE_DIR = tempfile.mkdtemp(prefix="exgs-worker-")
            atexit.register(_remove_private_dir, _PRIVATE_DIR)
        return _PRIVATE_DIR


def _wire_dtype(dt: np.dtype) -> np.dtype:
    """The dtype an array travels as: byte-swapped arrays go in native order (values unchanged)."""
    return dt.newbyteorder("=") if dt.byteorder == ">" else dt


def _pythonpath_for_worker(folder: str) -> str:
    """A PYTHONPATH entry that makes *this* exgs_core importable in the worker without dragging in the rest of
    our own site-packages (compiled wheels of another Python version): our package's own parent folder when it
    holds nothing else of note, else a link to the package in ``folder`` (private: :func:`_private_dir`)."""
    pkg = Path(__file__).resolve().parents[1]  # .../exgs_core
    parent = pkg.parent
    if not any((parent / n).exists() for n in ("numpy", "numba", "torch")):
        return str(parent)
    link = Path(folder) / "exgs_core"
    try:
        if link.is_symlink() and os.readlink(link) != str(pkg):
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(pkg, target_is_directory=True)
        return str(folder)
    except OSError:
        return ""  # the worker's own exgs_core install is used


_LIVE: weakref.WeakSet[WorkerClient] = weakref.WeakSet()


@atexit.register
def stop_all() -> None:
    """Stop every worker this process started (also registered with atexit)."""
    for w in list(_LIVE):
        try:
            w.stop()
        except Exception:  # noqa: BLE001
            pass


def _head_bytes(head) -> np.ndarray:
    """uint8 [B]: a SceneHead's payload, as it travels to the worker (input array ``head``)."""
    return np.frombuffer(head.to_bytes(), np.uint8)


# ------------------------------------------------------------------------------------------------- backends
class _Common:
    """What both backends share: ``render_restore`` from their ``render`` and ``restore``."""

    def render(self, scene, camera, *, backend: str = "auto", key: str | None = None, cancel=None):
        raise NotImplementedError

    def restore(self, rgb, alpha, depth=None, cancel=None, head=None):
        raise NotImplementedError

    def render_restore(self, scene, camera, *, backend: str = "auto", key: str | None = None, cancel=None):
        """(RenderResult of the raw render, restored rgb [H, W, 3]); a decoded .exgs's scene head
        (``scene.meta["exgs_head"]``; the identity for an .exgs without one, :func:`restoration_head`) runs before
        GaussPainter."""
        from ..codec.head import restoration_head

        res = self.render(scene, camera, backend=backend, key=key)
        return res, self.restore(res.rgb, res.alpha, res.depth, cancel=cancel, head=restoration_head(scene))


class LocalBackend(_Common):
    """Render and restore in this process (needs torch + diffusers here for restoration)."""

    kind = "in-process"

    def __init__(self, weights: str | None = None, device: str | None = None):
        self.weights, self.device = weights or None, device or None
        self._restorer = None
        self._lock = threading.Lock()

    def restorer(self):
        with self._lock:
            if self._restorer is None:
                if not has_torch_here():
                    raise WorkerError(
                        "in-process restoration needs torch in this Python "
                        f"({sys.executable}); use the worker process instead"
                    )
                from ..painter.restore import Restorer

                self._restorer = Restorer.from_pretrained(self.weights, device=self.device)
            return self._restorer

    def render(self, scene, camera, *, backend: str = "auto", key: str | None = None, cancel=None):
        from ..render import render

        return render(scene, camera, backend=backend)

    def restore(self, rgb, alpha, depth=None, cancel=None, head=None):
        """GaussPainter on one frame, after the scene head ``head`` (a SceneHead) when given."""
        return self.restorer().restore(rgb, alpha, depth, head=head)

    def stop(self) -> None:
        self._restorer = None

    @property
    def alive(self) -> bool:
        return True


class WorkerClient(_Common):
    """A worker process, started on demand (see the module docstring)."""

    kind = "worker"

    def __init__(
        self,
        python: str | None = None,
        *,
        weights: str | None = None,
        device: str | None = None,
        env: dict | None = None,
        start_timeout: float = 600.0,
    ):
        self.python_setting = python or None
        self.weights, self.device = weights or None, device or None
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.python: str | None = None
        self.log_path: str | None = None
        self.starts = 0
        self.last_crash: str | None = None
        self._arena = protocol.Arena()
        self._lock = threading.RLock()
        self._next_id = 0
        self._abandoned: list[int] = []  # ids of cancelled requests whose replies are still to come, in order
        self._scene_key: str | None = None
        self._busy_since: float | None = None
        _LIVE.add(self)

    # ---------------------------------------------------------------- process
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def busy(self) -> bool:
        return self._busy_since is not None

    def start(self) -> dict:
        """Start the worker (if it is not running) and return its ``hello`` facts."""
        with self._lock:
            if self.alive:
                return self.info
            if self.proc is not None:  # it died while idle: keep the reason (status line), start a new one
                self._crashed("(idle)", "it exited between requests")
            self._reap()
            self.python = resolve_python(self.python_setting)
            env = dict(os.environ)
            home = _private_dir()  # the worker's cwd (first on its sys.path with -m) and the link's folder
            pp = _pythonpath_for_worker(home)
            if pp:
                env["PYTHONPATH"] = pp + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            for k in ("PYTHONHOME", "PYTHONSTARTUP"):
                env.pop(k, None)
            env.update(self.extra_env)
            fd, self.log_path = tempfile.mkstemp(prefix="exgs-worker-", suffix=".log")
            log = os.fdopen(fd, "wb")
            try:
                self.proc = subprocess.Popen(
                    [self.python, "-m", "exgs_core.worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    bufsize=0,
                    close_fds=True,
                    cwd=home,
                )
            except OSError as e:
                raise WorkerError(f"cannot start the worker: {e}", self.python) from None
            finally:
                log.close()
            self.starts += 1
            self._abandoned = []
            self._arena.unlinked.clear()  # a new worker has none of them
            self._scene_key = None
            self.info = self._call("hello", {}, timeout=self.start_timeout)
            return self.info

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to quit; kill it if it does not within ``timeout``. Frees the shared memory."""
        with self._lock:
            p = self.proc
            if p is not None and p.poll() is None:
                try:
                    protocol.send_msg(p.stdin, {"id": -1, "op": "quit"})
                    p.wait(timeout)
                except (OSError, ValueError, subprocess.TimeoutExpired):
                    p.kill()
                    p.wait(5)
            self._reap()
            self._arena.close()
            if self.log_path and self.last_crash is None:  # a crash's log is kept (its path is in the message)
                try:
                    os.unlink(self.log_path)
                except OSError:
                    pass
                self.log_path = None

    def _reap(self):
        p, self.proc = self.proc, None
        if p is not None:
            for s in (p.stdin, p.stdout):
                try:
                    s.close()
                except OSError:
                    pass
            if p.poll() is None:
                p.kill()
                p.wait(5)

    def log_tail(self, n: int = 12) -> str:
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 8192))
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except (OSError, TypeError):
            return ""

    def _crashed(self, op: str, why: str) -> WorkerCrashed:
        p = self.proc
        rc = None
        if p is not None:
            try:
                rc = p.wait(3)
            except subprocess.TimeoutExpired:
                pass
        status = (
            "still running"
            if rc is None
            else (
                f"killed by signal {signal.Signals(-rc).name}"
                if rc < 0 and -rc in signal.Signals._value2member_map_
                else f"exit code {rc}"
            )
        )
        pid = p.pid if p is not None else "?"
        self._reap()
        tail = self.log_tail()
        msg = (
            f"the ExGS worker (pid {pid}, {self.python}) stopped during '{op}' ({status}; {why}); "
            f"it will be restarted for the next render. Worker log {self.log_path}"
            + (f", last lines:\n{tail}" if tail else "")
        )
        self.last_crash = msg
        return WorkerCrashed(msg)

    # ---------------------------------------------------------------- requests
    def _recv(self, op: str, timeout: float | None, t0: float, cancel) -> dict | None:
        p = self.proc
        assert p is not None and p.stdout is not None
        if os.name == "posix":
            import select

            while True:
                r, _, _ = select.select([p.stdout], [], [], 0.1)
                if r:
                    break
                if cancel is not None and cancel():
                    return None
                if timeout is not None and time.monotonic() - t0 > timeout:
                    raise self._crashed(op, f"no reply within {timeout:.0f} s")
        return protocol.recv_msg(p.stdout)

    def _abandon(self, rid: int, op: str, uses_memory: bool) -> None:
        """``rid`` was cancelled: its reply will be skipped when it comes. The worker may still write into the
        arena's segment for minutes, so the segment is handed over to it (unlinked here: the next request gets
        a fresh one, and the worker lets go of this one when told, see ``release``)."""
        self._abandoned.append(rid)
        if uses_memory:
            self._arena.retire()
        if op == "set_scene":  # the worker may or may not end up holding it: send it again next time
            self._scene_key = None

    def _call(self, op: str, args: dict, ins=None, outs=None, *, timeout: float | None = None, cancel=None):
        """One request; returns the result dict, or None when ``cancel()`` became true while waiting.

        The request is sent at once, even while cancelled requests are still running in the worker (their
        memory is not the next request's: :meth:`_abandon`); their replies, which come first, are skipped,
        and ``cancel`` is honoured while waiting for them too."""
        with self._lock:
            if not self.alive and op != "hello":
                self.start()
            self._next_id += 1
            rid = self._next_id
            msg = {"id": rid, "op": op, "args": args, "in": ins or {}, "out": outs or {}}
            if self._arena.unlinked:
                msg["release"] = list(self._arena.unlinked)
            try:
                data = protocol.encode_msg(msg)
            except protocol.ProtocolError as e:
                raise WorkerError(f"cannot send '{op}' to the worker: {e}") from None
            self._arena.unlinked.clear()
            t0 = time.monotonic()
            try:
                self._busy_since = t0
                assert self.proc is not None and self.proc.stdin is not None
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
                while True:
                    reply = self._recv(op, timeout, t0, cancel)
                    if reply is None:
                        self._abandon(rid, op, bool(ins or outs))
                        return None
                    want = self._abandoned[0] if self._abandoned else rid
                    got = reply.get("id")
                    if got is not None and got != want:  # id None: a message the worker could not read
                        raise self._crashed(op, f"reply {got} to request {want}")
                    if want == rid:
                        break
                    self._abandoned.pop(0)
            except (EOFError, BrokenPipeError, ConnectionError, OSError, ValueError) as e:
                raise self._crashed(op, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
            except protocol.ProtocolError as e:
                raise self._crashed(op, f"bad reply: {e}") from None
            finally:
                self._busy_since = None
            if not reply.get("ok"):
                raise _remote_error(op, reply)
            return reply.get("result") or {}

    def call_arrays(self, op: str, args: dict, inputs: dict, outputs: dict, *, cancel=None, timeout=None):
        """Send ``inputs`` (name -> array), receive ``outputs`` (name -> (shape, dtype)) as fresh arrays.
        Returns (result, outputs) or None when cancelled."""
        with self._lock:
            if not self.alive:
                self.start()
            spec = {k: (np.shape(v), _wire_dtype(np.asarray(v).dtype)) for k, v in inputs.items()}
            spec.update({f"out:{k}": (shape, _wire_dtype(np.dtype(dt))) for k, (shape, dt) in outputs.items()})
            try:
                descs, views = self._arena.layout(spec)
            except protocol.ProtocolError as e:
                raise WorkerError(f"cannot send '{op}' to the worker: {e}") from None
            for k, v in inputs.items():
                np.copyto(views[k], v, casting="same_kind")
            ins = {k: descs[k] for k in inputs}
            outs = {k: descs[f"out:{k}"] for k in outputs}
            result = self._call(op, args, ins, outs, timeout=timeout, cancel=cancel)
            if result is None:
                return None
            got = {k: np.array(views[f"out:{k}"]) for k in outputs}
            del views
            return result, got

    # ---------------------------------------------------------------- operations
    def hello(self) -> dict:
        return self.start()

    def echo(self, frame: np.ndarray) -> np.ndarray:
        """Round trip of one frame through the worker (it copies the input into the output)."""
        frame = np.asarray(frame)
        _, out = self.call_arrays("echo", {}, {"frame": frame}, {"frame": (frame.shape, frame.dtype)})
        return out["frame"]

    def noop_roundtrip(self, frame: np.ndarray) -> np.ndarray:
        """The frame into shared memory, a no-op request naming it, and the frame back out of shared memory:
        the fixed cost any request with a frame of this size pays (the worker reads nothing)."""
        frame = np.asarray(frame)
        with self._lock:
            if not self.alive:
                self.start()
            descs, views = self._arena.layout({"frame": (frame.shape, frame.dtype)})
            np.copyto(views["frame"], frame)
            self._call("echo", {}, {"frame": descs["frame"]}, {})
            out = np.array(views["frame"])
            del views
            return out

    def _ensure_scene(self, scene, key: str | None, cancel=None) -> str | None:
        """The scene's key, after sending the scene if the worker does not have it; None when cancelled."""
        digest = None if key else scene_key(scene)  # a content key: the worker checks the upload against it
        key = key or digest
        if key != self._scene_key or not self.alive:
            arrays = {f: np.ascontiguousarray(getattr(scene, f)) for f in SCENE_FIELDS}
            meta = {"antialiased": scene.antialiased}
            self._scene_key = None
            if (
                self.call_arrays("set_scene", {"key": key, "meta": meta, "digest": digest}, arrays, {}, cancel=cancel)
                is None
            ):
                return None
            self._scene_key = key
        return key

    def _restore_args(self) -> dict:
        return {"weights": self.weights, "device": self.device}

    def render(self, scene, camera, *, backend: str = "auto", key: str | None = None, cancel=None):
        from ..render.result import RenderResult

        with self._lock:
            if not self.alive:
                self.start()
            key = self._ensure_scene(scene, key, cancel)
            if key is None:
                return None
            h, w = camera.height, camera.width
            got = self.call_arrays(
                "render",
                {"key": key, "camera": camera_to_dict(camera), "backend": backend},
                {},
                {"rgb": ((h, w, 3), np.float32), "alpha": ((h, w), np.float32), "depth": ((h, w), np.float32)},
                cancel=cancel,
            )
        if got is None:
            return None
        r, o = got
        return RenderResult(o["rgb"], o["alpha"], o["depth"], None, r["backend"], r["n_rendered"])

    def restore(self, rgb, alpha, depth=None, cancel=None, head=None):
        """GaussPainter on one frame: rgb [H, W, 3] (over black), alpha [H, W] -> restored rgb [H, W, 3]; the scene
        head ``head`` (a SceneHead, e.g. ``restoration_head(scene)`` of a decoded .exgs) runs first when given."""
        rgb = np.asarray(rgb, np.float32)
        ins = {"rgb": rgb, "alpha": np.asarray(alpha, np.float32)}
        if depth is not None:
            ins["depth"] = np.asarray(depth, np.float32)
        if head is not None:
            ins["head"] = _head_bytes(head)
        got = self.call_arrays(
            "restore", self._restore_args(), ins, {"restored": (rgb.shape, np.float32)}, cancel=cancel
        )
        return None if got is None else got[1]["restored"]

    def render_restore(self, scene, camera, *, backend: str = "auto", key: str | None = None, cancel=None):
        """(RenderResult of the raw render, restored rgb [H, W, 3]), in the worker; a decoded .exgs's scene head
        (``scene.meta["exgs_head"]``; the identity for an .exgs without one, :func:`restoration_head`) travels with
        the request and runs before GaussPainter."""
        from ..codec.head import restoration_head
        from ..render.result import RenderResult

        with self._lock:
            if not self.alive:
                self.start()
            key = self._ensure_scene(scene, key, cancel)
            if key is None:
                return None
            h, w = camera.height, camera.width
            args = {"key": key, "camera": camera_to_dict(camera), "backend": backend, **self._restore_args()}
            head = restoration_head(scene)
            got = self.call_arrays(
                "render_restore",
                args,
                {} if head is None else {"head": _head_bytes(head)},
                {
                    "rgb": ((h, w, 3), np.float32),
                    "alpha": ((h, w), np.float32),
                    "depth": ((h, w), np.float32),
                    "restored": ((h, w, 3), np.float32),
                },
                cancel=cancel,
            )
        if got is None:
            return None
        r, o = got
        return RenderResult(o["rgb"], o["alpha"], o["depth"], None, r["backend"], r["n_rendered"]), o["restored"]

    def compress(self, src: str, dst: str, options: dict | None = None, cancel=None) -> dict | None:
        """UGC + .exgs coding of the file ``src`` into ``dst``, in the worker."""
        return self._call(
            "compress", {"src": os.fspath(src), "dst": os.fspath(dst), "options": options or {}}, cancel=cancel
        )

    def __del__(self):
        try:
            self.stop(timeout=1.0)
        except Exception:  # noqa: BLE001
            pass
