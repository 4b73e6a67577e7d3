"""The ``.exgs`` format's public API under its historical name: a re-export of the modules that implement it.

- :mod:`exgs_core.io.exgs`: the container (fixed header, JSON header, section table, checksums, versions,
  reader limits), :func:`encode` / :func:`decode` and the file functions :func:`read_exgs`, :func:`write_exgs`,
  :func:`read_header`, :func:`describe`.
- :mod:`exgs_core.codec.attributes`: the attribute table (one row per stored attribute: quantiser pair, bits,
  section, range-coder model, checks, error bound) and the quantise / dequantise pipeline it drives;
  :func:`error_bounds`, :func:`storage_order`, :func:`auto_position_bits`.
- :mod:`exgs_core.codec.options`: :class:`CodecOptions`.

The byte layout is specified in ``docs/FORMAT.md``; usage and the decoding rules are in :mod:`exgs_core.io.exgs`.
"""

from __future__ import annotations

# Module-level names of this module before the split (not in __all__, as before): still importable from here.
from .codec.attributes import (
    Progress,  # noqa: F401
    auto_position_bits,
    error_bounds,
    storage_order,
)
from .codec.options import CodecOptions
from .errors import FormatError, SceneError  # noqa: F401
from .io.exgs import (  # noqa: F401  # noqa: F401
    CODEC_REVISION,
    FEATURE_MIN_VERSION,
    FLAG_ANTIALIASED,
    FORMAT_VERSION,
    KNOWN_FLAGS,
    MAGIC,
    MAX_GAUSSIANS,
    MAX_JSON,
    MAX_PALETTE,
    MAX_SECTIONS,
    PARALLEL_DECODE_BYTES,
    READER_VERSION,
    SECTION_NAMES,
    SECTION_REQUIRED,
    decode,
    decode_memory_estimate,  # noqa: F401
    describe,
    encode,
    read_exgs,
    read_header,
    write_exgs,
)
from .scene import GaussianScene  # noqa: F401

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "READER_VERSION",
    "FEATURE_MIN_VERSION",
    "SECTION_NAMES",
    "CodecOptions",
    "encode",
    "decode",
    "read_exgs",
    "write_exgs",
    "read_header",
    "describe",
    "error_bounds",
    "storage_order",
    "auto_position_bits",
]
