"""GaussPainter: one-step, mask-guided restoration of renders of pruned (UGC-compressed) Gaussian scenes.

A tiny diffusers ``AutoencoderTiny`` (/4) + one ``UNet2DModel`` step at a fixed timestep (200), on top of a
classical coverage-aware pre-fill, with a pixel-space skip path; trained from scratch here on CPU on our own
scenes. See :mod:`.model` (architecture, weights format), :mod:`.restore` (inference API),
:mod:`.train` (``exgs train-painter``), :mod:`.classical` (the no-learning baseline) and
``weights/MODEL_CARD.md``. torch and diffusers are imported lazily.
"""

from __future__ import annotations


def __getattr__(name):
    if name in ("Restorer", "DEFAULT_WEIGHTS", "restore_frames"):
        import importlib

        _r = importlib.import_module(__name__ + ".restore")
        return getattr(_r, "restore" if name == "restore_frames" else name)
    if name in ("PainterWeightsError", "RestoreError", "validate_config", "CONFIG_BOUNDS"):
        from . import model

        return getattr(model, name)
    if name == "classical_restore":
        from .classical import classical_restore

        return classical_restore
    raise AttributeError(name)


__all__ = [
    "Restorer",
    "restore_frames",
    "DEFAULT_WEIGHTS",
    "PainterWeightsError",
    "RestoreError",
    "validate_config",
    "CONFIG_BOUNDS",
    "classical_restore",
]
