"""Cut the small packed-format fixtures in tests/data from redistributable scenes in ../shared/data/scenes.

Run from the repository root:  ``.venv/bin/python tests/data/make_fixtures_packed.py``  (needs ../shared, or
EXGS_SHARED pointing at the folder that holds data/). Deterministic: the same inputs give the same bytes.

Every fixture keeps the real encoded values of a prefix of the scene (no re-quantisation):

* SPZ (biker v4 zstd, PDAL v2 gzip SH3): the raw attribute streams are decompressed, the first M points of
  every stream kept, and the streams re-wrapped (zstd / gzip) under a header with the count patched.
* compressed PLY (biker): the first k whole chunks with their 256 * k vertex rows, header counts patched.
* SOG (flowers, SH2 palette): the WebP textures are decoded, their first rows kept (width unchanged, so
  Gaussian i keeps texel i), and re-encoded as lossless WebP (exact=True keeps RGB under alpha 0). The
  65,536-entry SH palette alone is 1.25 MB, so only the palette entries the kept Gaussians use are kept, in
  ascending order of their old index, and the labels renumbered to match: every decoded SH value is unchanged.
  meta.json keeps everything (codebooks, means range) except ``count`` and ``shN.count``.

Each fixture is checked against the same prefix of the full file's decode before it is written.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from exgs_core.io.compressed_ply import CHUNK_SIZE, parse_ply_header, read_compressed_ply  # noqa: E402
from exgs_core.io.sog import decode_webp_rgba, read_sog  # noqa: E402
from exgs_core.io.spz import pack_spz, read_spz, unpack_spz  # noqa: E402

SHARED = Path(os.environ.get("EXGS_SHARED", REPO.parent / "shared")) / "data" / "scenes"
OUT = REPO / "tests" / "data"

SPZ_V4_SRC, SPZ_V4_OUT, SPZ_V4_M = "playcanvas_biker.spz", "playcanvas_biker_head4096.v4.spz", 4096
SPZ_V2_SRC, SPZ_V2_OUT, SPZ_V2_M = "pdal_fourth_st_sh3.spz", "pdal_fourth_st_sh3_head4096.v2.spz", 4096
CPLY_SRC, CPLY_OUT, CPLY_CHUNKS = "playcanvas_biker.compressed.ply", "playcanvas_biker_head16chunks.compressed.ply", 16
SOG_SRC, SOG_OUT, SOG_ROWS = "playcanvas_flowers_lod2_sh2.sog", "playcanvas_flowers_lod2_sh2_head13rows.sog", 13

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _same_prefix(small, full) -> None:
    m = small.n
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        a, b = getattr(small, f), getattr(full, f)[:m]
        assert a.shape == b.shape and np.array_equal(a, b), f"{f} differs from the prefix of the full decode"


def make_spz(src: str, out: str, m: int) -> Path:
    path = SHARED / src
    raw = unpack_spz(path.read_bytes(), path)
    data = pack_spz(raw.head(m))
    dst = OUT / out
    dst.write_bytes(data)
    _same_prefix(read_spz(dst), read_spz(path))
    return dst


def make_compressed_ply(src: str, out: str, chunks: int) -> Path:
    path = SHARED / src
    data = path.read_bytes()
    hdr = parse_ply_header(data, path)
    assert [e.name for e in hdr.elements] == ["chunk", "vertex"], "only SH0 compressed PLY is cut here"
    chunk, vertex = hdr.elements
    nv = min(vertex.count, chunks * CHUNK_SIZE)
    body_chunk = data[hdr.size : hdr.size + chunks * chunk.dtype.itemsize]
    vstart = hdr.size + chunk.nbytes
    body_vertex = data[vstart : vstart + nv * vertex.dtype.itemsize]
    lines = []
    for ln in data[: hdr.size].decode("ascii").split("\n"):
        if ln.startswith("element chunk "):
            ln = f"element chunk {chunks}"
        elif ln.startswith("element vertex "):
            ln = f"element vertex {nv}"
        lines.append(ln)
    dst = OUT / out
    dst.write_bytes("\n".join(lines).encode("ascii") + body_chunk + body_vertex)
    _same_prefix(read_compressed_ply(dst), read_compressed_ply(path))
    return dst


def _webp_lossless(rgba: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(
        buf, "WEBP", lossless=True, quality=100, method=6, exact=True
    )
    data = buf.getvalue()
    back = decode_webp_rgba(data, min_texels=1, max_texels=1 << 28)
    assert np.array_equal(back, rgba), "lossless WebP round trip changed texels"
    return data


def make_sog(src: str, out: str, rows: int) -> Path:
    path = SHARED / src
    z = zipfile.ZipFile(path)
    meta = json.loads(z.read("meta.json"))
    assert meta["version"] == 2

    def tex(name: str) -> np.ndarray:
        return decode_webp_rgba(z.read(name), min_texels=1, max_texels=1 << 28)

    members: dict[str, bytes] = {}
    width = tex(meta["means"]["files"][0]).shape[1]
    n = min(meta["count"], width * rows)
    for sec in ("means", "quats", "scales", "sh0"):
        for name in meta[sec]["files"]:
            members[name] = _webp_lossless(tex(name)[:rows])
    shn = meta.get("shN")
    if shn:
        cen_name, lab_name = shn["files"][:2]
        lab = tex(lab_name)[:rows].copy()
        labels = (lab[..., 0].astype(np.int64) | (lab[..., 1].astype(np.int64) << 8)).reshape(-1)[:n]
        used = np.unique(labels)  # ascending old palette indices
        new = np.searchsorted(used, labels)
        flat = lab.reshape(-1, 4)
        flat[:n, 0] = new & 255
        flat[:n, 1] = new >> 8
        members[lab_name] = _webp_lossless(lab)
        cen = tex(cen_name)
        ncoef = cen.shape[1] // 64
        k = len(used)
        out_cen = np.zeros((-(-k // 64), 64 * ncoef, 4), np.uint8)
        out_cen[..., 3] = 255
        src_y, src_x = used // 64, (used % 64) * ncoef
        dst_y, dst_x = np.arange(k) // 64, (np.arange(k) % 64) * ncoef
        for j in range(ncoef):
            out_cen[dst_y, dst_x + j] = cen[src_y, src_x + j]
        members[cen_name] = _webp_lossless(out_cen)
        meta["shN"]["count"] = int(k)
    meta["count"] = int(n)
    dst = OUT / out
    with zipfile.ZipFile(dst, "w") as zo:
        for name in ["meta.json"] + sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            if name == "meta.json":
                info.compress_type = zipfile.ZIP_DEFLATED
                zo.writestr(info, json.dumps(meta, separators=(",", ":")).encode("utf-8"))
            else:
                info.compress_type = zipfile.ZIP_STORED
                zo.writestr(info, members[name])
    _same_prefix(read_sog(dst), read_sog(path))
    return dst


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} not found: the fixtures are cut from ../shared/data/scenes", file=sys.stderr)
        return 1
    made = [
        make_spz(SPZ_V4_SRC, SPZ_V4_OUT, SPZ_V4_M),
        make_spz(SPZ_V2_SRC, SPZ_V2_OUT, SPZ_V2_M),
        make_compressed_ply(CPLY_SRC, CPLY_OUT, CPLY_CHUNKS),
        make_sog(SOG_SRC, SOG_OUT, SOG_ROWS),
    ]
    for p in made:
        print(f"{p.relative_to(REPO)}: {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
