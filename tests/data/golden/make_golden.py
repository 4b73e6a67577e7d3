"""Make the golden .exgs files of the current format version and the decoded arrays they must keep giving.

    .venv/bin/python tests/data/golden/make_golden.py            # writes the files that do not exist yet
    .venv/bin/python tests/data/golden/make_golden.py --check    # re-decodes every golden file, compares

Each golden ``golden_v<V>_<name>.exgs`` comes with ``golden_v<V>_<name>.npz`` (plain arrays, no pickles):
``in_*`` the encoder's input scene (so the file can be re-made), ``out_*`` the arrays ``decode`` returned when
the golden was made (``means, quats, log_scales, opacity_logits, sh, sh_full``) and ``sha256`` of the .exgs.
Golden files of released versions are never rewritten: the script refuses to overwrite (``--force`` to do it
anyway while a version is still in development). tests/test_exgs_format.py decodes every golden file and
requires the same arrays bit for bit.

The version in a name is the version of the file the current writer produced for that case (it writes the lowest
version that holds every feature it uses), so one case can have goldens of several versions.

Sources: ``supersplat`` = the first 500 Gaussians of ``tests/data/supersplat_label_sh3_1000.ply``, ``biker`` =
every fourth of the 4,096 Gaussians of ``tests/data/playcanvas_biker_head4096.v4.spz`` (both © PlayCanvas Ltd.,
MIT licence, see tests/data/SOURCES.md); the others are synthetic (:func:`exgs_core.codec.synthetic.synthetic_scene`).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from exgs_core import exgs_format as F  # noqa: E402
from exgs_core.codec.synthetic import synthetic_scene  # noqa: E402
from exgs_core.scene import GaussianScene  # noqa: E402

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def _golden_head():
    """A scene head of every optional feature and three classes, its weights seeded (a real head is fitted by
    ``compress``; the golden pins the layout, not a fit)."""
    from exgs_core.codec.head import FEATURES, SceneHead, _features_per_class

    flags = sum(FEATURES)
    rng = np.random.default_rng(17)
    w = rng.normal(0.0, 0.02, (3, _features_per_class(3, flags), 3)).astype(np.float16)
    return SceneHead(3, flags, np.array([0.3, 0.98], np.float32), w)


def _golden_head_r0_int8():
    """A head of payload layout version 2: radius 0, two classes, int8 codes with fp16 scales (seeded)."""
    from exgs_core.codec.head import FEATURES, SceneHead, _features_per_class

    flags = sum(FEATURES)
    rng = np.random.default_rng(18)
    w = rng.normal(0.0, 0.05, (2, _features_per_class(0, flags), 3)).astype(np.float16)
    return SceneHead(0, flags, np.array([0.5], np.float32), w).quantized()


def _cases():
    """name -> (scene, sh_full, options[, scene head])."""
    import exgs_core as ex

    src = ex.load(REPO / "tests" / "data" / "supersplat_label_sh3_1000.ply").subset(np.arange(500))
    src, _ = src.sanitize()
    keep = (np.arange(src.n) % 3) != 0
    yield "supersplat_sh3_500", src, keep, F.CodecOptions(sh_palette_size=64)
    s = synthetic_scene(300, 0, seed=7)
    s.antialiased = True
    yield (
        "synthetic_sh0_300_aa_wide",
        s,
        None,
        F.CodecOptions(position_bits=18, rotation_bits=12, scale_bits=10, opacity_bits=10, color_bits=9),
    )
    yield "synthetic_sh2_200", synthetic_scene(200, 2, seed=8), None, F.CodecOptions()
    yield "empty_sh1", GaussianScene.empty(0, sh_degree=1), None, F.CodecOptions()
    biker = ex.load(REPO / "tests" / "data" / "playcanvas_biker_head4096.v4.spz").subset(np.arange(0, 4096, 4))
    yield (
        "biker_sh0_1024_coarse",
        biker,
        None,
        F.CodecOptions(rotation_bits=7, scale_bits=6, opacity_bits=7, color_bits=6),
    )
    # the optional HEAD section (FORMAT.md 4.2): the same Gaussians, default options, and a scene head
    yield "biker_sh0_1024_head", biker, None, F.CodecOptions(), _golden_head()
    yield "biker_sh0_1024_head_r0_int8", biker, None, F.CodecOptions(), _golden_head_r0_int8()


def out_arrays(scene: GaussianScene) -> dict:
    out = {f"out_{f}": getattr(scene, f) for f in FIELDS}
    out["out_sh_full"] = np.asarray(scene.meta["exgs_sh_full"], bool)
    return out


def make(force: bool) -> None:
    for name, scene, sh_full, opts, *head in _cases():
        head = head[0] if head else None
        data = F.encode(
            scene, sh_full=sh_full, options=opts, source_sha256="0" * 64, extra_header={"golden": name}, head=head
        )
        v = F.describe(data)["version"]
        exgs = HERE / f"golden_v{v}_{name}.exgs"
        npz = exgs.with_suffix(".npz")
        if exgs.exists() and not force:
            print(f"keep {exgs.name} (exists; --force to rewrite)")
            continue
        dec = F.decode(data)
        arrays = {f"in_{f}": getattr(scene, f) for f in FIELDS}
        arrays["in_sh_full"] = np.ones(scene.n, bool) if sh_full is None else sh_full
        arrays["in_antialiased"] = np.array(bool(scene.antialiased))
        arrays.update(out_arrays(dec))
        arrays["sha256"] = np.array(hashlib.sha256(data).hexdigest())
        if head is not None:
            arrays["out_head"] = np.frombuffer(head.to_bytes(), np.uint8)
        F.write_exgs(exgs, data)
        np.savez_compressed(npz, **arrays)
        print(f"wrote {exgs.name} ({len(data)} bytes) and {npz.name}")


def check() -> int:
    bad = 0
    for exgs in sorted(HERE.glob("golden_v*.exgs")):
        ref = np.load(exgs.with_suffix(".npz"), allow_pickle=False)
        data = exgs.read_bytes()
        ok = hashlib.sha256(data).hexdigest() == str(ref["sha256"])
        dec = out_arrays(F.decode(data))
        for k, v in dec.items():
            ok &= v.dtype == ref[k].dtype and v.shape == ref[k].shape and v.tobytes() == ref[k].tobytes()
        head = F.decode(data).meta.get("exgs_head")
        if "out_head" in ref.files:
            ok &= head is not None and head.to_bytes() == ref["out_head"].tobytes()
        else:
            ok &= head is None
        print(("ok  " if ok else "FAIL") + f" {exgs.name}")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    if a.check:
        raise SystemExit(check())
    make(a.force)
