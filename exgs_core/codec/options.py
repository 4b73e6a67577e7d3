"""The .exgs encoder's options: one frozen dataclass, checked on construction (docs/FORMAT.md, section 8).

The bit-width fields and their ranges come from the attribute table (:data:`~exgs_core.codec.attributes.ATTRIBUTES`,
each row's ``option`` and ``write_bits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .attributes import ATTRIBUTES, MAX_PALETTE, POSITIONS

__all__ = ["CodecOptions"]


@dataclass(frozen=True)
class CodecOptions:
    """Quantisation and entropy-coding knobs of the .exgs encoder (docs/FORMAT.md, section 5).

    Attributes:
        position_bits: bits per axis of the centres, relative to the scene's bounds (12..21; below 16 suits
            pruned scenes, whose Gaussians are large against the grid: ``compress.codec_options``), or ``"auto"``:
            16 plus one bit per doubling of the bounds beyond twice the 1..99 % quantile extent (floaters far
            out would otherwise coarsen the core), at most 21 (:func:`auto_position_bits`).
        rotation_bits: bits per smallest-three component (4..20; 10 packs into 32 bits).
        scale_bits: bits per log-scale axis, uniform over the scene's range (4..16).
        opacity_bits: bits of the quantised sigmoid(opacity) (4..16).
        color_bits: bits per SH DC channel, uniform over the scene's range (4..16).
        sh_palette_size: palette size for the higher SH; None picks
            :func:`~exgs_core.codec.palette.default_palette_size` (about M / 16, 256..16384).
        sh_iterations: Lloyd passes of the palette k-means (coarse and per cell).
        sh_sample_per_centroid: training sample size per palette entry.
        sh_probes: coarse cells searched per vector in the final assignment (1 or 2).
        seed: seed of the palette's subsample and initialisation.
        zstd_level: zstandard level for every stream (1..22).
        range_coder: also range-code the positions, rotations, log-scales, opacity and DC colour with their
            context models (codec 2, format version 2) and keep, per section, the smaller of that and zstd.
            False writes format version 1 files, readable by every exgs.
        choose_filters: try the byte-shuffle and delta filters per stream and keep the smaller.
        threads: worker threads compressing streams in parallel (output does not depend on it).
    """

    position_bits: int | str = 16
    rotation_bits: int = 10
    scale_bits: int = 8
    opacity_bits: int = 8
    color_bits: int = 8
    sh_palette_size: int | None = None
    sh_iterations: int = 4
    sh_sample_per_centroid: int = 8
    sh_probes: int = 2
    seed: int = 0
    zstd_level: int = 9
    range_coder: bool = True
    choose_filters: bool = True
    threads: int = 2

    def __post_init__(self):
        def rng(name, lo, hi):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
                raise ValueError(f"CodecOptions.{name} must be an integer in {lo}..{hi}, got {v!r}")

        for a in ATTRIBUTES:  # the bit widths, in table order
            if not (a is POSITIONS and self.position_bits == "auto"):
                rng(a.option, *a.write_bits)
        if self.sh_palette_size is not None:
            rng("sh_palette_size", 1, MAX_PALETTE)
        rng("sh_iterations", 0, 100)
        rng("sh_sample_per_centroid", 1, 1 << 16)
        rng("sh_probes", 1, 2)
        rng("seed", 0, 2**32 - 1)
        rng("zstd_level", 1, 22)
        rng("threads", 1, 64)
