"""Reader for PlayCanvas SOG (Spatially Ordered Gaussians), versions 2 and 1, numpy-vectorised.

Containers
----------
A ``.sog`` zip archive holding ``meta.json`` (at the top level or in one folder) and the lossless WebP
textures it names (read from the zip members in memory, never extracted), or an unbundled folder holding
``meta.json`` and the textures, or the path of such a ``meta.json``. Texture names must be plain file names.

Textures (one RGBA texel per Gaussian, row-major: Gaussian i is texel i; width * height >= N)
------------------------------------------------------------------------------------------
Version 2 (``"version": 2``, ``count`` = N):

``means_l`` / ``means_u``  low / high byte of a 16-bit unorm u per axis (r, g, b = x, y, z):
    v = mins + (maxs - mins) * u / 65535 (a span of 0 counts as 1, as splat-transform does), then
    x = sign(v) (exp(|v|) - 1) (inverse of the writer's sign(x) log(|x| + 1))
``quats``  r, g, b = the three smallest components of the unit quaternion (w, x, y, z), each
    (c / 255 * 2 - 1) / sqrt(2); a = 252 + index of the largest (omitted) component, recovered as
    sqrt(1 - sum of squares) >= 0. Any other alpha decodes to the identity (counted in ``notes``)
``scales``  r, g, b = labels into the 256-entry ``scales.codebook`` (natural-log scales)
``sh0``  r, g, b = labels into ``sh0.codebook`` (SH DC coefficients); a = sigmoid(opacity) * 255
``shN_labels``  r + 256 g = index into a palette of ``shN.count`` SH-rest vectors (``shN.bands`` = degree)
``shN_centroids``  the palette: 64 entries per row, each ``K - 1`` texels wide (width 64 (K - 1)); texel j of
    an entry holds labels of coefficient j for r, g, b into ``shN.codebook``

Version 1 (no ``version`` field, or ``"version": 1``): ``means.shape[0]`` = N, the same means / quats textures, and linear
quantisation instead of codebooks: scales = mins + (maxs - mins) * b / 255 per axis; ``sh0`` r, g, b, a =
mins + (maxs - mins) * b / 255 for DC r, g, b and the opacity **logit**; shN centroids the same with scalar
mins / maxs; the degree comes from the centroid texture width (192, 512, 960).

``meta.json`` ``"model": "antialiased"`` sets ``scene.antialiased = True``. Axes are as stored (PLY
frame), no conversion. Decoding follows PlayCanvas splat-transform ``read-sog.ts`` / ``read-sog-v1.ts``, the
oracle that made ``../shared/data/reference-ply/*.from-sog.ply`` (float64 arithmetic, then float32); opacity
bytes 0 and 255 give logit(1e-6) and logit(1 - 1e-6) as there.

Robustness: member sizes are checked against limits derived from N before decompressing (zip headers, then
the bytes actually read), image dimensions are read from the WebP header and checked against N before
decoding the pixels, and N itself must pass the limits of :mod:`exgs_core.limits` before any texture is decoded
(a lossless WebP of a constant image takes 34 bytes at any size, so the textures' size alone bounds nothing): at
most 50,000,000 Gaussians (``EXGS_MAX_GAUSSIANS``, ``read_sog(max_gaussians=...)``), at most max(1,048,576, 16 per
byte of texture data) (``EXGS_MAX_GAUSSIANS_PER_BYTE``; real bundles hold 12-33 bytes per Gaussian), and a decode
that fits in the memory this process may use (:func:`decode_memory_estimate`). Every failure raises
:class:`~exgs_core.errors.FormatError` (:class:`~exgs_core.errors.LimitError` for the limits) naming the file and
the member / JSON field.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from .. import limits
from ..conventions import logit, sh_coeff_count
from ..errors import FormatError
from ..scene import GaussianScene

__all__ = ["read_sog", "SogSource", "decode_webp_rgba"]

MAX_TEXTURE_SIDE = 16383  # WebP's limit
_MAX_META_BYTES = 16 << 20
_V1_BANDS_BY_WIDTH = {192: 1, 512: 2, 960: 3}
# Components stored in r, g, b for each index of the largest component (w, x, y, z order).
_QUAT_SLOTS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


class SogSource:
    """Bounded access to the members of a SOG bundle: a zip archive or a folder (holding ``meta.json``).

    ``read(name, limit)`` returns the member's bytes or raises :class:`FormatError` when it is missing,
    larger than ``limit`` or unreadable. Use as a context manager (closes the zip).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        self._dir: Path | None = None
        p = self.path
        if p.is_dir():
            self._dir = p
            self.meta_name = "meta.json"
        elif p.name.endswith(".json") and not zipfile.is_zipfile(p):
            self._dir = p.parent
            self.meta_name = p.name
        else:
            try:
                self._zip = zipfile.ZipFile(p)
                names = self._zip.namelist()
            except FileNotFoundError:
                raise FormatError("no such file", p) from None
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as e:
                raise FormatError(f"not a readable zip archive: {e}", p, field="zip") from None
            metas = sorted(
                (n for n in names if n == "meta.json" or n.endswith("/meta.json")), key=lambda n: (n.count("/"), n)
            )
            if not metas:
                raise FormatError("the archive has no meta.json", p, field="meta.json")
            if len(metas) > 1 and metas[0].count("/") == metas[1].count("/"):
                raise FormatError(
                    f"the archive holds several meta.json at the same level: {metas[:3]}", p, field="meta.json"
                )
            self.meta_name = metas[0].rsplit("/", 1)[-1]
            self._prefix = metas[0][: -len("meta.json")]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def compressed_size(self, name: str) -> int:
        """Stored size of a member in bytes (0 when unknown or missing)."""
        try:
            if self._zip is not None:
                return int(self._zip.getinfo(self._prefix + name).compress_size)
            assert self._dir is not None  # a folder source when there is no zip
            return (self._dir / name).stat().st_size
        except (KeyError, OSError):
            return 0

    def read(self, name: str, limit: int, field: str | None = None) -> bytes:
        """Bytes of member ``name`` (relative to meta.json), at most ``limit`` of them."""
        field = field or name
        pp = PurePosixPath(name)
        if not name or "\\" in name or pp.is_absolute() or len(pp.parts) != 1 or name in (".", ".."):
            raise FormatError(f"member name {name!r} is not a plain file name", self.path, field=field)
        if self._zip is not None:
            try:
                info = self._zip.getinfo(self._prefix + name)
            except KeyError:
                raise FormatError(f"missing member {name!r}", self.path, field=field) from None
            if info.file_size > limit:
                raise FormatError(
                    f"member {name!r} declares {info.file_size} bytes, more than the {limit} its content can need",
                    self.path,
                    field=field,
                )
            try:
                with self._zip.open(info) as f:
                    data = f.read(limit + 1)
            except Exception as e:  # zipfile raises many types (BadZipFile, zlib.error, NotImplementedError, ...)
                raise FormatError(
                    f"cannot read member {name!r}: {type(e).__name__}: {e}", self.path, field=field
                ) from None
        else:
            assert self._dir is not None  # a folder source when there is no zip
            p = self._dir / name
            try:
                if p.stat().st_size > limit:
                    raise FormatError(
                        f"{name!r} has {p.stat().st_size} bytes, more than the {limit} its content can need",
                        self.path,
                        field=field,
                    )
                with open(p, "rb") as f:
                    data = f.read(limit + 1)
            except FileNotFoundError:
                raise FormatError(f"missing file {name!r} beside meta.json", self.path, field=field) from None
            except OSError as e:
                raise FormatError(f"cannot read {name!r}: {e.strerror or e}", self.path, field=field) from None
        if len(data) > limit:
            raise FormatError(f"member {name!r} holds more than {limit} bytes", self.path, field=field)
        return data


def decode_webp_rgba(
    data: bytes, *, min_texels: int, max_texels: int, path=None, field: str | None = None, width: int | None = None
) -> np.ndarray:
    """Decode a WebP image to uint8 [H, W, 4] RGBA after checking its dimensions from the header:
    ``min_texels <= W * H <= max_texels``, sides <= 16383 and, when given, ``W == width``."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data))
        fmt = im.format
        w, h = im.size
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError, ...
        raise FormatError(f"not a readable image: {type(e).__name__}: {e}", path, field=field) from None
    if fmt != "WEBP":
        raise FormatError(f"expected a WebP image, found {fmt}", path, field=field)
    if not (0 < w <= MAX_TEXTURE_SIDE and 0 < h <= MAX_TEXTURE_SIDE):
        raise FormatError(f"image size {w}x{h} outside 1..{MAX_TEXTURE_SIDE}", path, field=field)
    if width is not None and w != width:
        raise FormatError(f"image width {w}, expected {width}", path, field=field)
    if not min_texels <= w * h <= max_texels:
        raise FormatError(
            f"image size {w}x{h} = {w * h} texels, expected {min_texels}..{max_texels}", path, field=field
        )
    try:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    except Exception as e:
        raise FormatError(f"corrupt WebP data: {type(e).__name__}: {e}", path, field=field) from None
    if rgba.shape != (h, w, 4):
        raise FormatError(f"decoded image has shape {rgba.shape}, expected ({h}, {w}, 4)", path, field=field)
    return rgba


# ---------------------------------------------------------------------------------------------- meta checks
def _get(obj, key, path, field):
    if not isinstance(obj, dict) or key not in obj:
        raise FormatError(f"meta.json lacks {field!r}", path, field=field)
    return obj[key]


def _int(v, path, field, lo, hi) -> int:
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or not math.isfinite(v)
        or v != int(v)
        or not lo <= v <= hi
    ):
        raise FormatError(f"{field} = {v!r} is not an integer in {lo}..{hi}", path, field=field)
    return int(v)


def _floats(v, path, field, n=None, lo_n=1, hi_n=None) -> np.ndarray:
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
        raise FormatError(f"{field} must be a list of numbers", path, field=field)
    if (n is not None and len(v) != n) or (n is None and not lo_n <= len(v) <= (hi_n or len(v))):
        want = n if n is not None else f"{lo_n}..{hi_n}"
        raise FormatError(f"{field} has {len(v)} entries, expected {want}", path, field=field)
    a = np.asarray(v, dtype=np.float64)
    if not np.isfinite(a).all():
        raise FormatError(f"{field} holds non-finite values", path, field=field)
    return a


def _number(v, path, field) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise FormatError(f"{field} = {v!r} is not a finite number", path, field=field)
    return float(v)


def _files(section, path, field, n) -> list[str]:
    files = _get(section, "files", path, f"{field}.files")
    if not isinstance(files, list) or len(files) < n or not all(isinstance(f, str) for f in files[:n]):
        raise FormatError(f"{field}.files must list {n} file name(s)", path, field=f"{field}.files")
    return files[:n]


def _lookup(codebook: np.ndarray, labels: np.ndarray, path, field) -> np.ndarray:
    if labels.size and int(labels.max()) >= len(codebook):
        raise FormatError(f"label {int(labels.max())} outside the {len(codebook)}-entry codebook", path, field=field)
    return codebook[labels]


# ---------------------------------------------------------------------------------------------- decoding
def _decode_means(lo: np.ndarray, hi: np.ndarray, mins: np.ndarray, maxs: np.ndarray) -> np.ndarray:
    u = lo[:, :3].astype(np.float64) + 256.0 * hi[:, :3].astype(np.float64)
    span = maxs - mins
    span = np.where(span == 0, 1.0, span)
    v = mins + span * (u / 65535.0)
    return (np.sign(v) * (np.exp(np.abs(v)) - 1.0)).astype(np.float32)


def _decode_quats(q: np.ndarray, notes: list) -> np.ndarray:
    n = q.shape[0]
    tag = q[:, 3].astype(np.int64)
    valid = (tag >= 252) & (tag <= 255)
    largest = np.where(valid, tag - 252, 0)
    abc = (q[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / np.sqrt(2.0)
    out = np.zeros((n, 4), np.float64)
    rows = np.arange(n)
    slots = _QUAT_SLOTS[largest]  # [N, 3]
    for j in range(3):
        out[rows, slots[:, j]] = abc[:, j]
    out[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - (abc * abc).sum(axis=1)))
    bad = int((~valid).sum())
    if bad:
        out[~valid] = (1.0, 0.0, 0.0, 0.0)
        notes.append(f"sog: {bad} quaternion(s) with an invalid tag decoded as identity")
    return out.astype(np.float32)


def _texture_bounds(n: int) -> tuple[int, int]:
    """(min, max) texel count accepted for a per-Gaussian texture of n Gaussians."""
    return n, max(2 * n, n + 65536)


def decode_memory_estimate(n: int, bands: int) -> int:
    """Bytes :func:`read_sog` needs at its peak for ``n`` Gaussians with ``bands`` SH bands, an upper bound of what
    was measured (1 M Gaussians: ~160 MB above the interpreter without SH, ~320 MB with 3 bands): a decoded texture
    and its RGBA copy (8 bytes per texel, textures up to 2 N texels), the float64 temporaries of the means and
    quaternions, the palette labels and the float32 scene."""
    k = sh_coeff_count(max(bands, 0))
    return int(n * (240 + 12 * k + (24 if bands > 0 else 0)))


def _decode(src: SogSource, path, max_gaussians=None) -> GaussianScene:
    raw = src.read(src.meta_name, _MAX_META_BYTES, field="meta.json")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise FormatError(f"meta.json is not valid JSON: {e}", path, field="meta.json") from None
    if not isinstance(meta, dict):
        raise FormatError("meta.json is not a JSON object", path, field="meta.json")
    version = meta.get("version")
    if version is None or (version == 1 and not isinstance(version, bool)):
        version = 1
    elif isinstance(version, bool) or version != 2:
        raise FormatError(
            f"unsupported SOG version {version!r} (known: 1 = no version field, 2)", path, field="version"
        )
    notes: list[str] = []
    means_sec = _get(meta, "means", path, "means")
    if version == 2:
        n = _int(_get(meta, "count", path, "count"), path, "count", 0, MAX_TEXTURE_SIDE**2)
    else:
        shape = _get(means_sec, "shape", path, "means.shape")
        if not isinstance(shape, list) or not shape:
            raise FormatError("means.shape must be a list [count, ...]", path, field="means.shape")
        n = _int(shape[0], path, "means.shape", 0, MAX_TEXTURE_SIDE**2)
    mins = _floats(_get(means_sec, "mins", path, "means.mins"), path, "means.mins", 3)
    maxs = _floats(_get(means_sec, "maxs", path, "means.maxs"), path, "means.maxs", 3)
    f_means = _files(means_sec, path, "means", 2)
    quats_sec = _get(meta, "quats", path, "quats")
    f_quats = _files(quats_sec, path, "quats", 1)
    scales_sec = _get(meta, "scales", path, "scales")
    f_scales = _files(scales_sec, path, "scales", 1)
    sh0_sec = _get(meta, "sh0", path, "sh0")
    f_sh0 = _files(sh0_sec, path, "sh0", 1)
    if version == 2:
        scales_cb = _floats(
            _get(scales_sec, "codebook", path, "scales.codebook"), path, "scales.codebook", lo_n=1, hi_n=256
        )
        sh0_cb = _floats(_get(sh0_sec, "codebook", path, "sh0.codebook"), path, "sh0.codebook", lo_n=1, hi_n=256)
    else:
        s_min = _floats(_get(scales_sec, "mins", path, "scales.mins"), path, "scales.mins", 3)
        s_max = _floats(_get(scales_sec, "maxs", path, "scales.maxs"), path, "scales.maxs", 3)
        c_min = _floats(_get(sh0_sec, "mins", path, "sh0.mins"), path, "sh0.mins", 4)
        c_max = _floats(_get(sh0_sec, "maxs", path, "sh0.maxs"), path, "sh0.maxs", 4)
    shn = meta.get("shN")
    bands = 0
    if shn is not None:
        if not isinstance(shn, dict):
            raise FormatError("shN must be an object", path, field="shN")
        f_shn = _files(shn, path, "shN", 2)
        if version == 2:
            bands = _int(_get(shn, "bands", path, "shN.bands"), path, "shN.bands", 0, 3)
            palette = _int(_get(shn, "count", path, "shN.count"), path, "shN.count", 1, 65536)
            shn_cb = _floats(_get(shn, "codebook", path, "shN.codebook"), path, "shN.codebook", lo_n=1, hi_n=256)
        else:
            shn_min = _number(_get(shn, "mins", path, "shN.mins"), path, "shN.mins")
            shn_max = _number(_get(shn, "maxs", path, "shN.maxs"), path, "shN.maxs")
            bands = -1  # from the centroid texture width
    model = meta.get("model")
    antialiased = model == "antialiased"
    if model is not None and model not in ("default", "antialiased"):
        notes.append(f"sog: unknown splat model {model!r} read as default")

    # N against the limits (exgs_core.limits: count, Gaussians per byte of the textures, memory), checked before
    # decoding anything: a lossless WebP of a constant image takes 34 bytes at any size.
    members = f_means + f_quats + f_scales + f_sh0 + (f_shn[1:] if shn is not None else [])
    stored = sum(src.compressed_size(m) for m in members)
    limits.check_count(
        n,
        file_bytes=stored,
        need_bytes=decode_memory_estimate(n, 3 if bands < 0 else bands),
        path=path,
        field="count" if version == 2 else "means.shape",
        max_gaussians=max_gaussians,
    )

    lo_t, hi_t = _texture_bounds(n)
    tex_limit = 8 * hi_t + (1 << 20)  # a lossless WebP never needs much more than 4 bytes per texel

    def texture(name: str, field: str) -> np.ndarray:
        data = src.read(name, tex_limit, field=field)
        rgba = decode_webp_rgba(data, min_texels=lo_t, max_texels=hi_t, path=path, field=field)
        return rgba.reshape(-1, 4)[:n]

    if n == 0:
        k = sh_coeff_count(max(bands, 0))
        return _scene(
            np.zeros((0, 3)),
            np.zeros((0, 4)),
            np.zeros((0, 3)),
            np.zeros(0),
            np.zeros((0, k, 3)),
            version,
            antialiased,
            notes,
            path,
        )
    lo = texture(f_means[0], "means_l")
    hi = texture(f_means[1], "means_u")
    means = _decode_means(lo, hi, mins, maxs)
    del lo, hi
    quats = _decode_quats(texture(f_quats[0], "quats"), notes)
    sl = texture(f_scales[0], "scales")
    c0 = texture(f_sh0[0], "sh0")
    if version == 2:
        log_scales = _lookup(scales_cb.astype(np.float32), sl[:, :3], path, "scales.codebook")
        dc = _lookup(sh0_cb.astype(np.float32), c0[:, :3], path, "sh0.codebook")
        opacity = logit(c0[:, 3].astype(np.float64) / 255.0, eps=1e-6)
    else:
        log_scales = (s_min + (s_max - s_min) * (sl[:, :3].astype(np.float64) / 255.0)).astype(np.float32)
        col = c_min + (c_max - c_min) * (c0[:, :4].astype(np.float64) / 255.0)
        dc = col[:, :3].astype(np.float32)
        opacity = col[:, 3].astype(np.float32)
    del sl, c0

    rest = None
    if shn is not None and bands != 0:
        lab = texture(f_shn[1], "shN_labels")
        labels = lab[:, 0].astype(np.int64) | (lab[:, 1].astype(np.int64) << 8)
        del lab
        if version == 2:
            ncoef = sh_coeff_count(bands) - 1
            rows_needed = -(-palette // 64)
            cdata = src.read(f_shn[0], 8 * 64 * ncoef * rows_needed + (1 << 20), field="shN_centroids")
            cen = decode_webp_rgba(
                cdata,
                min_texels=64 * ncoef * rows_needed,
                max_texels=64 * ncoef * 1024,
                width=64 * ncoef,
                path=path,
                field="shN_centroids",
            )
        else:
            cdata = src.read(f_shn[0], 8 * 960 * 1024 + (1 << 20), field="shN_centroids")
            cen = decode_webp_rgba(cdata, min_texels=1, max_texels=960 * 1024, path=path, field="shN_centroids")
            w = cen.shape[1]
            if w not in _V1_BANDS_BY_WIDTH:
                raise FormatError(
                    f"shN centroid texture width {w}, expected 192, 512 or 960", path, field="shN_centroids"
                )
            bands = _V1_BANDS_BY_WIDTH[w]
            ncoef = sh_coeff_count(bands) - 1
            palette = 64 * cen.shape[0]
        ok = labels < palette
        nbad = int((~ok).sum())
        if nbad:
            notes.append(f"sog: {nbad} SH palette label(s) >= {palette}: SH rest set to 0")
        lab_ok = np.where(ok, labels, 0)
        del labels
        # Decode the palette once (entry e: row e // 64, texels (e % 64) ncoef .. + ncoef - 1), then gather it per
        # Gaussian: the same values as decoding each Gaussian's texels, without [N, ncoef] index temporaries.
        ent = cen[:, :, :3].reshape(-1, ncoef, 3)  # [entries, ncoef, 3] codebook labels
        if version == 2:
            # only the entries some Gaussian uses must hold valid codebook labels
            used = np.bincount(lab_ok, minlength=ent.shape[0]) > 0
            top = ent.reshape(ent.shape[0], -1).max(axis=1)[used]
            if top.size and int(top.max()) >= len(shn_cb):
                raise FormatError(
                    f"label {int(top.max())} outside the {len(shn_cb)}-entry codebook", path, field="shN.codebook"
                )
            pal = shn_cb.astype(np.float32)[np.minimum(ent, len(shn_cb) - 1)]
        else:
            pal = (shn_min + (shn_max - shn_min) * (ent.astype(np.float64) / 255.0)).astype(np.float32)
        rest = (pal, lab_ok, ok)
    elif shn is not None:
        notes.append("sog: shN with 0 bands ignored")
    k = 1 if rest is None else rest[0].shape[1] + 1
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = dc
    if rest is not None:
        pal, lab_ok, ok = rest
        pal = pal.reshape(pal.shape[0], -1)
        flat = sh.reshape(n, 3 * k)
        for a in range(0, n, 4096):  # blocks of rows: no [N, K - 1, 3] temporary beside the output
            flat[a : a + 4096, 3:] = pal[lab_ok[a : a + 4096]]
        sh[~ok, 1:] = 0.0
    return _scene(means, quats, log_scales, opacity, sh, version, antialiased, notes, path)


def _scene(means, quats, log_scales, opacity, sh, version, antialiased, notes, path) -> GaussianScene:
    meta = {"format": "sog", "sog_version": version, "notes": notes, "path": os.fspath(path)}
    if antialiased:
        notes.append("sog: model 'antialiased' (trained with mip-splatting antialiasing)")
    return GaussianScene(means, quats, log_scales, opacity, sh, meta=meta, antialiased=bool(antialiased))


def read_sog(path: str | os.PathLike, *, max_gaussians: int | None = None) -> GaussianScene:
    """Read a SOG bundle (``.sog`` zip, folder holding ``meta.json``, or the ``meta.json`` itself).

    ``max_gaussians``: the most Gaussians accepted (0 = no limit); default ``EXGS_MAX_GAUSSIANS`` or 50,000,000.
    The other limits of :mod:`exgs_core.limits` apply too, checked from ``meta.json`` and the zip directory
    before any texture is decoded: at most max(1,048,576, 16 per byte of texture data) Gaussians (real bundles hold
    12-33 bytes per Gaussian), and a decode that fits in the memory this process may use.

    Returns:
        Scene with means float32 [N, 3] (as stored), quats float32 [N, 4] w, x, y, z (unit up to
        quantisation), log_scales float32 [N, 3], opacity_logits float32 [N] (finite), sh float32 [N, K, 3]
        with K from ``shN.bands``. ``meta``: ``sog_version``, ``notes``; ``antialiased`` when the model says so.

    Raises:
        LimitError: (a FormatError, field ``count`` or ``means.shape``) more Gaussians than the limits allow.
        FormatError: naming the file and the member or JSON field at fault.
    """
    from . import check_input_path

    check_input_path(path)  # a named pipe or a device would block or never end
    limits.check_argument(max_gaussians)
    p = Path(path)
    if not p.exists():
        raise FormatError("no such file or folder", p)
    try:
        with SogSource(p) as src:
            return _decode(src, p, max_gaussians)
    except FormatError:
        raise
    except (ValueError, IndexError, TypeError, KeyError, OverflowError, MemoryError, OSError) as e:
        raise FormatError(f"cannot decode SOG: {type(e).__name__}: {e}", p) from e
