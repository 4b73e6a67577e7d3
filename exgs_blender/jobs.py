"""Background work without bpy: a compression job that runs in a thread (or inline) and is polled.

Blender data is never touched here: the operator reads the object's splats into a GaussianScene on the main
thread, hands it over, polls :attr:`CompressJob.progress` from a modal timer and creates datablocks from
:attr:`CompressJob.result` on the main thread again. In background mode (``blender -b``, tests, farms) there is no
event loop, so the operator calls :meth:`CompressJob.run` inline instead.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

FIRST_USE = "first use after installing: compiling kernels, once per machine"


@dataclass
class CompressOutcome:
    data: bytes
    report: Any  # exgs_core.compress.CompressReport
    scene: Any  # the decoded GaussianScene (what the .exgs file holds)


@dataclass
class CompressJob:
    """One UGC compression of ``scene`` with ``options`` (exgs_core.compress.CompressOptions)."""

    scene: Any
    options: Any
    cameras: list | None = None
    progress: float = 0.0
    stage: str = "queued"
    result: CompressOutcome | None = None
    error: str | None = None
    cancelled: bool = False
    seconds: float = 0.0
    first_use: bool = False  # the kernels were not compiled yet when the job started (it compiles them)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _done: threading.Event = field(default_factory=threading.Event)

    # -------------------------------------------------------------- control
    def start(self) -> None:
        """Run in a daemon thread; poll :attr:`done`."""
        self._thread = threading.Thread(target=self.run, name="exgs-compress", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    # -------------------------------------------------------------- work
    def _on_progress(self, fraction: float, stage: str) -> None:
        self.progress = float(min(max(fraction, 0.0), 1.0))
        self.stage = str(stage) + (f" ({FIRST_USE})" if self.first_use else "")

    def run(self) -> None:
        """Compress, then decode the bytes (so the result shows exactly what the file holds)."""
        from exgs_core.compress import compress, decompress
        from exgs_core.errors import ExgsError
        from exgs_core.prune import Cancelled

        t = time.perf_counter()
        self.first_use = not kernels_ready()
        if self.first_use:
            self.stage = FIRST_USE
        try:
            data, report = compress(
                self.scene, self.options, cameras=self.cameras, progress=self._on_progress, cancel=self._cancel
            )
            self.stage = "decoding"
            decoded = decompress(data, max_gaussians=0)  # our own bytes: no count limit
            self.result = CompressOutcome(data=data, report=report, scene=decoded)
            self.progress, self.stage = 1.0, "done"
        except Cancelled:
            self.cancelled, self.stage = True, "cancelled"
        except ExgsError as e:
            self.error, self.stage = str(e), "failed"
        except ValueError as e:
            self.error, self.stage = f"invalid option: {e}", "failed"
        except Exception as e:  # noqa: BLE001 - reported to the user, never swallowed silently
            self.error, self.stage = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}", "failed"
        finally:
            self.seconds = time.perf_counter() - t
            self._done.set()


# ------------------------------------------------------------------------------------------------ warm-up
#: The warm-up child: exgs_core from the same folder as ours, progress lines on stdout. It decides whether there
#: is anything to compile (is_warm imports numba and hashes the sources: ~0.2 s kept off Blender's start-up).
_WARMUP_CODE = """
import sys
sys.path.insert(0, sys.argv[1])
from exgs_core.warmup import is_warm, warm_up
if not is_warm():
    warm_up(lambda f, stage: print(f"EXGS_WARMUP {f:.3f} {stage}", flush=True))
print("EXGS_WARMUP 1.000 done", flush=True)
"""


@dataclass
class WarmUp:
    """Compiling exgs_core's kernels ahead of their first use (numba: ~25 s on 2 cores, once per machine;
    :mod:`exgs_core.warmup`), started when the add-on is enabled.

    It runs in a **child process** of the same Python (Blender's own), not in a thread: numba's on-disk cache is
    shared, so Blender's process afterwards loads the kernels instead of compiling them, and no Python thread
    runs inside Blender while the user works (a busy Python thread during operators that reset Python, such as
    File > New, can crash Blender: reproduced with bpy 5.0.1)."""

    stage: str = "not started"
    seconds: float = 0.0
    error: str | None = None
    log_path: str | None = None
    _proc: Any = None
    _t0: float = 0.0
    _fraction: float = 0.0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def progress(self) -> float:
        """0..1 from the child's last progress line."""
        self._update()
        return self._fraction

    def start(self) -> bool:
        """Start the child unless it runs (it exits at once when the kernels are compiled already); True if
        started. Cheap: no numba import or source hashing in Blender's process."""
        import os
        import subprocess
        import tempfile
        from pathlib import Path

        if self.running or _READY:
            return False
        import exgs_core
        from exgs_core.worker.client import own_python

        py = own_python()
        if py is None:
            self.stage, self.error = "not started", "no Python executable found for the warm-up process"
            return False
        site = str(Path(exgs_core.__file__).resolve().parents[1])  # the folder holding our exgs_core (and numba)
        fd, self.log_path = tempfile.mkstemp(prefix="exgs-warmup-", suffix=".log")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        try:
            with os.fdopen(fd, "wb") as log:
                self._proc = subprocess.Popen(
                    [py, "-s", "-c", _WARMUP_CODE, site],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=tempfile.gettempdir(),
                    close_fds=True,
                )
        except OSError as e:
            self.stage, self.error = "failed", f"cannot start the warm-up process: {e}"
            return False
        self._t0 = time.perf_counter()
        self.stage, self.error, self._fraction = "starting", None, 0.0
        return True

    def _update(self) -> None:
        if self._proc is None or self.log_path is None:
            return
        try:
            with open(self.log_path, "rb") as f:
                lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.startswith("EXGS_WARMUP ")]
        except OSError:
            lines = []
        if lines:
            _, frac, stage = (lines[-1] + " ").split(" ", 2)
            self._fraction, self.stage = float(frac), stage.strip()
        rc = self._proc.poll()
        if rc is not None:
            self.seconds = self.seconds or time.perf_counter() - self._t0
            if rc != 0 and self.stage != "done":
                self.stage, self.error = "failed", f"warm-up process exited with {rc} (log: {self.log_path})"

    def cancel(self) -> None:
        if self.running:
            self._proc.kill()
            self._proc.wait()
            self.stage = "cancelled"

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the child; True when it is not running (any more)."""
        import subprocess

        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            self._update()
        return True


WARMUP = WarmUp()


_READY = False


def kernels_ready() -> bool:
    """True when exgs_core's kernels are compiled and cached (a render / compress will not compile). Cheap after
    the first call (~1 ms; once True it stays True)."""
    global _READY
    if not _READY:
        from exgs_core.warmup import is_warm

        _READY = is_warm()
    return _READY
