"""How restoration runs, as one value: what the Blender add-on's preferences say, handed to the backend factory
and used as its cache key (a changed setting replaces the backend)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["WORKER", "IN_PROCESS"]
MODES = ("WORKER", "IN_PROCESS")
DEVICES = (None, "cpu", "cuda")


@dataclass(frozen=True)
class RestoreSettings:
    """Restoration settings (hashable; equal settings share one backend).

    Attributes:
        enabled: restoration is allowed at all (the add-on's Restoration preference).
        mode: ``"WORKER"`` (a separate Python with torch: :class:`~exgs_core.worker.WorkerClient`) or
            ``"IN_PROCESS"`` (torch in this Python: :class:`~exgs_core.worker.LocalBackend`).
        python: the worker's Python executable; None = found automatically
            (:func:`~exgs_core.worker.resolve_python`).
        weights: a GaussPainter weights folder; None = ``$EXGS_PAINTER_WEIGHTS`` or the shipped checkpoint.
        device: torch device, ``"cpu"`` / ``"cuda"``; None = CUDA when available.
    """

    enabled: bool = True
    mode: Mode = "WORKER"
    python: str | None = None
    weights: str | None = None
    device: str | None = field(default=None)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"RestoreSettings.mode must be one of {MODES}, got {self.mode!r}")
        if self.device not in DEVICES:
            raise ValueError(f"RestoreSettings.device must be one of {DEVICES}, got {self.device!r}")
        for name in ("python", "weights"):  # "" (an empty Blender path property) means "not set"
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)

    @property
    def backend_key(self) -> RestoreSettings:
        """The part that decides which backend serves these settings (``enabled`` does not)."""
        return RestoreSettings(True, self.mode, self.python, self.weights, self.device)
