"""Regenerate the PLY and .splat test fixtures of tests/data from ../shared/data (deterministic).

Usage (from the repository root)::

    .venv/bin/python tests/data/make_fixtures_ply_splat.py [--shared ../shared/data]

Only redistributable scenes are used (see ../shared/data/SOURCES.md and tests/data/SOURCES.md). The cuts are
written with plyfile / raw bytes, never with exgs's own writers, so the tests read them as independent files:

* ``donut_sh0_2000.ply``: first 2000 vertices of ``gshairlod_donut_fused_sh0.ply``, its own 14-property binary
  layout (no normals), values unchanged.
* ``donut_sh0_300_ascii.ply``: first 300 vertices of the same, as ASCII PLY (plyfile's ``%.18g`` text, exact).
* ``plant_2000.splat``: first 2000 records (bytes unchanged) of ``splatset_plant.splat``.
* ``supersplat_label_sh3_1000.ply``: first 1000 vertices of ``supersplat_mixed_drops_label_crop_sh3.ply``, its
  63-property layout (normals, SH3, extra ``transform``), values unchanged.
* ``ply_splat_fixtures.json``: sizes and SHA-256 of the fixtures, and the splat-transform 3.7.0 decode
  (``reference-ply/splatset_plant.from-splat.ply``) of a few plant records, as an oracle the tests can use
  without ../shared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import plyfile

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = HERE.parents[2] / "shared" / "data"

DONUT = "scenes/gshairlod_donut_fused_sh0.ply"
PLANT = "scenes/splatset_plant.splat"
PLANT_REF = "reference-ply/splatset_plant.from-splat.ply"
LABEL = "scenes/supersplat_mixed_drops_label_crop_sh3.ply"

#: Plant records whose splat-transform decode goes into the JSON oracle.
PLANT_REF_ROWS = [0, 1, 2, 3, 500, 999, 1500, 1998, 1999]


def _cut_ply(src: Path, dst: Path, n: int, *, text: bool, comment: str) -> None:
    ply = plyfile.PlyData.read(str(src))
    rows = np.array(ply["vertex"].data[:n])  # copy out of the memory map
    el = plyfile.PlyElement.describe(rows, "vertex")
    out = plyfile.PlyData([el], text=text, byte_order="<", comments=[comment])
    with open(dst, "wb") as f:
        out.write(f)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared data folder (../shared/data)")
    args = ap.parse_args(argv)
    sh = args.shared

    _cut_ply(
        sh / DONUT,
        HERE / "donut_sh0_2000.ply",
        2000,
        text=False,
        comment="first 2000 of GSHairLoD donut fused.ply, MIT (c) 2025 Xijie Yang et al.",
    )
    _cut_ply(
        sh / DONUT,
        HERE / "donut_sh0_300_ascii.ply",
        300,
        text=True,
        comment="first 300 of GSHairLoD donut fused.ply, MIT (c) 2025 Xijie Yang et al.",
    )
    _cut_ply(
        sh / LABEL,
        HERE / "supersplat_label_sh3_1000.ply",
        1000,
        text=False,
        comment="first 1000 of supersplat fruit_drops_minimal.ply crop, MIT (c) PlayCanvas",
    )

    raw = (sh / PLANT).read_bytes()
    (HERE / "plant_2000.splat").write_bytes(raw[: 2000 * 32])

    ref = plyfile.PlyData.read(str(sh / PLANT_REF))["vertex"].data
    cols = [
        "x",
        "y",
        "z",
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    ]
    oracle = {str(i): {c: float(ref[c][i]) for c in cols} for i in PLANT_REF_ROWS}

    names = ["donut_sh0_2000.ply", "donut_sh0_300_ascii.ply", "plant_2000.splat", "supersplat_label_sh3_1000.ply"]
    info = {
        "fixtures": {
            n: {"bytes": (HERE / n).stat().st_size, "sha256": hashlib.sha256((HERE / n).read_bytes()).hexdigest()}
            for n in names
        },
        "plant_2000.splat": {
            "oracle": "PlayCanvas splat-transform 3.7.0 decode (reference-ply/splatset_plant.from-splat.ply), "
            "float32 values; rot_* are normalised from b/255*2-1",
            "rows": oracle,
        },
    }
    (HERE / "ply_splat_fixtures.json").write_text(json.dumps(info, indent=1) + "\n")
    for n in names:
        print(f"{n}: {(HERE / n).stat().st_size} B")


if __name__ == "__main__":
    main()
