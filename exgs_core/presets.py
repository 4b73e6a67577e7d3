"""Named settings of the compressor that the CLI and the Blender add-on share, in a module light enough to import
while building a parser or drawing a panel (no numba)."""

from __future__ import annotations

from typing import Any

#: The fast preset (``exgs compress --fast``, the add-on's "Fast" speed): one Ward merge instead of three judged on
#: the check views, the compact codec instead of the ladder, no scene head, 12 automatic scoring views instead of 24.
#: No judging renders at all: on 2 cores 5.3x splat-transform's speed on a 1M-Gaussian scene and 2.6x on the biker,
#: up to several dB below the defaults on fuzzy scenes (BENCHMARKS.md, "--fast against the peer").
FAST_PRESET: dict[str, Any] = {"compensation": "pairwise", "codec": "compact", "head": "off", "views": 12}
#: From this many Gaussians the CLI and the add-on suggest the fast preset (where the merges stop running side by
#: side; the defaults took 31 s for 1M and about 30 minutes for 10M on 2 cores, ``--fast`` 6.5 s for 1M).
FAST_HINT_GAUSSIANS = 3_000_000
