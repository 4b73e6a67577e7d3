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


@dataclass
class CompressOutcome:
    data: bytes
    report: object  # exgs_core.compress.CompressReport
    scene: object  # the decoded GaussianScene (what the .exgs file holds)


@dataclass
class CompressJob:
    """One UGC compression of ``scene`` with ``options`` (exgs_core.compress.CompressOptions)."""

    scene: object
    options: object
    cameras: list | None = None
    progress: float = 0.0
    stage: str = "queued"
    result: CompressOutcome | None = None
    error: str | None = None
    cancelled: bool = False
    seconds: float = 0.0
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
        self.stage = str(stage)

    def run(self) -> None:
        """Compress, then decode the bytes (so the result shows exactly what the file holds)."""
        from exgs_core.compress import compress, decompress
        from exgs_core.errors import ExgsError
        from exgs_core.ugc import Cancelled

        t = time.perf_counter()
        try:
            data, report = compress(self.scene, self.options, cameras=self.cameras, progress=self._on_progress,
                                    cancel=self._cancel)
            self.stage = "decoding"
            decoded = decompress(data)
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
