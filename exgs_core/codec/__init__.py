"""The .exgs codec (docs/FORMAT.md): the attribute table and its quantise / dequantise pipeline
(:mod:`.attributes`), the encoder's options (:mod:`.options`), Morton order, scalar/rotation quantisers, SH
palette and the entropy stage; :mod:`.synthetic` builds a deterministic test scene.

The container that puts them together is :mod:`exgs_core.io.exgs` (also reachable as :mod:`exgs_core.exgs_format`).
"""

from . import attributes, entropy, morton, options, palette, quantize

__all__ = ["attributes", "entropy", "morton", "options", "palette", "quantize"]
