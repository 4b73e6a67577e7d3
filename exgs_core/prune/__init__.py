"""Pruning without re-optimisation: the first half of ExGS's UGC (Universal Gaussian Compression).

Each step is a pure function, arrays in, new arrays out:

1. :mod:`.score`: every Gaussian's significance over M views (:func:`accumulate`, then :func:`significance`).
2. :mod:`.sample`: which Gaussians survive: :func:`voxel_sample` (voxel-based, with a retention ratio rho) or
   :func:`top_k`; both keep exactly :func:`keep_count` of them.
3. :mod:`.merge`: closed-form compensation of the survivors for the removed ones: :func:`merge_into_survivors`,
   per-voxel :func:`amplify`, or :func:`pairwise_merge` (which replaces step 2: it drops the invisible and merges
   neighbour pairs down to the budget, by a :class:`PairwiseRule`).
4. :mod:`.sh`: :func:`split_sh`: the best-ranked share of the survivors keeps full SH, the rest become DC-only.
5. :mod:`.refit`: :func:`refit_colours`: the survivors' SH coefficients refitted by linear least squares against
   the original's renders of the scoring views (closed form, conjugate gradients; geometry untouched).

:func:`exgs_core.compress.prune` runs them as the compressor does; :func:`exgs_core.compress.compress` then codes
the result.
"""

from .cancel import Cancelled, Progress, check_cancel
from .merge import (
    KL_MASS_CONSERVING,
    KL_MASS_CONSERVING_AFTER_DROP,
    WARD_OPAQUE,
    PairwiseRule,
    amplify,
    coverage_mass,
    merge_into_survivors,
    pairwise_merge,
)
from .refit import RefitReport, refit_colours
from .sample import SampleResult, auto_voxel_size, keep_count, top_k, voxel_keys, voxel_sample
from .score import SCORES, Accumulation, accumulate, significance
from .sh import split_sh

__all__ = [
    "KL_MASS_CONSERVING",
    "KL_MASS_CONSERVING_AFTER_DROP",
    "SCORES",
    "WARD_OPAQUE",
    "Accumulation",
    "Cancelled",
    "PairwiseRule",
    "Progress",
    "RefitReport",
    "SampleResult",
    "accumulate",
    "amplify",
    "auto_voxel_size",
    "check_cancel",
    "coverage_mass",
    "keep_count",
    "merge_into_survivors",
    "pairwise_merge",
    "refit_colours",
    "significance",
    "split_sh",
    "top_k",
    "voxel_keys",
    "voxel_sample",
]
