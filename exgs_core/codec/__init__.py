"""The .exgs codec pieces (docs/FORMAT.md): Morton order, scalar/rotation quantisers, SH palette, entropy stage.

The container that puts them together is :mod:`exgs_core.exgs_format`.
"""

from . import entropy, morton, palette, quantize

__all__ = ["entropy", "morton", "palette", "quantize"]
