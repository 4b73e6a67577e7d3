"""The scene head: a small linear restoration filter that ``compress`` fits for one scene and ships in its .exgs.

A generic restorer sees only the render; the compressor also has the original scene. It renders both on its own
training views and solves, in closed form, for the linear filter that best maps the decoded scene's renders back
to the original's. The filter costs about a kilobyte (fp16 coefficients) and travels in the file's optional
``HEAD`` section (docs/FORMAT.md, section 4.2); :func:`apply_head` runs it on any render of the decoded scene.

The model (one *class* shown; a head may hold up to :data:`MAX_CLASSES` of them, chosen per pixel by its alpha):

    residual[p, o] = sum_f  phi[p, f] * W[class(p), f, o]          o = r, g, b
    restored[p]    = max(x[p] + residual[p], 0)

with ``x`` the render's colour over black (premultiplied) and ``phi`` the pixel's features, in this order:

1. the ``(2r+1) x (2r+1)`` neighbourhood of ``x`` (edges replicated): index ``c (2r+1)^2 + (dy+r)(2r+1) + (dx+r)``
   for channel ``c``, row offset ``dy`` and column offset ``dx`` in ``-r..r``;
2. then, for each flag of :data:`FEATURES` the head has, in the order of the table: ``alpha``: ``a``;
   ``thin``: ``x_c (1 - a)`` (3 values: what a partly covered pixel lacks, per channel); ``thin2``:
   ``x_c (1 - a)^2`` (3); ``mean_thin``: the window mean of ``x_c`` times ``(1 - a)`` (3); ``depth_edge``:
   ``e`` and ``e a`` (2) where ``e = min(1, sum over the 3x3 neighbours of |d' - d'_centre| / median(d' where
   a > 0.5))`` and ``d'`` is the depth where ``a > 1e-3``, else 0 (1 when no pixel has ``a > 0.5``).

Classes: ``class(p)`` = the number of ``thresholds`` that ``a[p]`` is at or above (``np.digitize``).

Storage: the coefficients ``W`` [C, F, 3] are fp16, or int8 codes times a per-class, per-output-channel fp16
scale (:data:`KIND_INT8`, half the bytes; measured on 5 scenes at 0.1 / 0.02 retention it keeps the fp16 gain to
within 0.01 dB). A radius-0 head (the pixel alone, no neighbours) is the smallest kind worth its bytes on small
files. Both need payload layout version 2; heads that version 1 can hold (fp16, radius >= 1) are written as
version 1, so older readers keep reading them.

Fitting (:class:`HeadFitter`) is weighted ridge least squares on a seeded pixel sample of each training view; a
view's weight is ``1 / MSE`` of its unrestored render (floored at 1e-6), so the fit maximises the mean of
per-view PSNR rather than being led by a few poor views. Everything is float32 numpy: no torch.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import FormatError

__all__ = [
    "HEAD_TAG",
    "HEAD_SECTION",
    "FEATURES",
    "SceneHead",
    "HeadFitter",
    "UnknownHeadVersion",
    "apply_head",
    "head_gain",
    "head_gains",
    "HeadFrame",
    "unrestored_scores",
    "scene_head",
    "restoration_head",
]

#: The .exgs section tag and name of a scene head (an ancillary section: readers that do not know it skip it).
HEAD_TAG = b"HEAD"
HEAD_SECTION = "scene_head"
#: Payload layout versions this reader understands: 1 (fp16, radius 1..5) and 2 (adds radius 0 and int8 codes).
#: Writers emit the lowest version that holds the head (:attr:`SceneHead.version`).
HEAD_VERSIONS = (1, 2)
#: ``kind``: the linear filter of this module with fp16 coefficients (versions 1, 2) ...
KIND_LINEAR = 1
#: ... or with int8 codes and fp16 scales per class and output channel (version 2).
KIND_INT8 = 2
#: Optional per-pixel features: flag bit -> (name, values per pixel), in feature order.
FEATURES = {1: ("alpha", 1), 2: ("thin", 3), 4: ("thin2", 3), 8: ("mean_thin", 3), 16: ("depth_edge", 2)}
FEATURE_BITS = {name: bit for bit, (name, _) in FEATURES.items()}
#: The features ``compress`` fits (measured on 5 scenes x 8 held-out views at retention 0.1, one class: the
#: neighbourhood and alpha alone +0.076 dB, with ``thin`` +0.109, with ``depth_edge`` +0.126, with all five +0.148).
DEFAULT_FEATURES = ("alpha", "thin", "thin2", "mean_thin", "depth_edge")
#: The neighbourhood radius of ``compress``'s larger candidates (3 x 3 pixels; it also fits radius 0). Measured on
#: 5 scenes x 8 held-out views at retention 0.1 and 0.02 against what the same bytes buy as retention (net dB =
#: gain - retention slope x section bytes): radius 1 keeps 85-95 % of radius 3's gain in 28 % of its bytes (274 vs 994 bytes with one class, 750 vs 2,910
#: with three), and nets more on 9 of the 10 scene/retention pairs.
DEFAULT_RADIUS = 1
MIN_RADIUS = 0
MAX_RADIUS = 5
MAX_CLASSES = 4
#: Floor of a view's MSE when weighting views by 1 / MSE (60 dB).
MIN_VIEW_MSE = 1e-6
_PRE = struct.Struct("<BBBBHH")  # version, kind, radius, classes, feature flags, features per class


class UnknownHeadVersion(Exception):
    """The payload is a head of a layout version or kind this reader does not know (written by a newer exgs):
    not an error, the container skips the optional section and notes it."""


def _features_per_class(radius: int, flags: int) -> int:
    return 3 * (2 * radius + 1) ** 2 + sum(n for bit, (_, n) in FEATURES.items() if flags & bit)


@dataclass(frozen=True, eq=False)
class SceneHead:
    """A fitted scene head (see the module docstring for the model).

    Attributes:
        radius: r, the neighbourhood is (2r+1) x (2r+1) pixels, 0..:data:`MAX_RADIUS`.
        flags: the optional features (bits of :data:`FEATURES`).
        thresholds: float32 [C-1], increasing alpha thresholds of the C classes (empty: one class).
        weights: [C, F, 3], F = 3 (2r+1)^2 + the optional features' values: float16 coefficients, or int8 codes
            when ``scales`` is given.
        scales: None (fp16 weights), or float16 [C, 3] >= 0: coefficient = scale[class, o] x code.
    """

    radius: int
    flags: int
    thresholds: np.ndarray
    weights: np.ndarray
    scales: np.ndarray | None = None

    def __post_init__(self):
        c = len(self.thresholds) + 1
        want = (c, _features_per_class(self.radius, self.flags), 3)
        dtype = np.float16 if self.scales is None else np.int8
        if self.weights.shape != want or self.weights.dtype != dtype:
            raise ValueError(f"weights must be {np.dtype(dtype)} {want}, got {self.weights.dtype} {self.weights.shape}")
        if self.scales is not None and (self.scales.shape != (c, 3) or self.scales.dtype != np.float16):
            raise ValueError(f"scales must be float16 {(c, 3)}, got {self.scales.dtype} {self.scales.shape}")
        if not MIN_RADIUS <= self.radius <= MAX_RADIUS:
            raise ValueError(f"radius must be in {MIN_RADIUS}..{MAX_RADIUS}, got {self.radius}")

    @classmethod
    def identity(cls) -> SceneHead:
        """The head that changes nothing (radius 0, no features, one class, zero coefficients; 26 payload bytes):
        what restores a decoded .exgs that carries no head (:func:`restoration_head`)."""
        return cls(0, 0, np.zeros(0, np.float32), np.zeros((1, 3, 3), np.float16))

    @property
    def is_identity(self) -> bool:
        """True when every coefficient is 0: :func:`apply_head` returns the render as it is."""
        return not np.any(self.weights)

    @property
    def classes(self) -> int:
        return len(self.thresholds) + 1

    @property
    def kind(self) -> int:
        """:data:`KIND_LINEAR` (fp16 coefficients) or :data:`KIND_INT8`."""
        return KIND_LINEAR if self.scales is None else KIND_INT8

    @property
    def version(self) -> int:
        """The payload layout version :meth:`to_bytes` writes: the lowest that holds this head."""
        return 1 if self.kind == KIND_LINEAR and self.radius >= 1 else 2

    @property
    def uses_depth(self) -> bool:
        return bool(self.flags & FEATURE_BITS["depth_edge"])

    @property
    def features(self) -> list[str]:
        return [name for bit, (name, _) in FEATURES.items() if self.flags & bit]

    def coefficients(self) -> np.ndarray:
        """float32 [C, F, 3]: the filter's coefficients W (int8 codes times their scales, f32 arithmetic)."""
        if self.scales is None:
            return self.weights.astype(np.float32)
        return self.weights.astype(np.float32) * self.scales.astype(np.float32)[:, None, :]

    @property
    def nbytes(self) -> int:
        """Bytes of the serialised payload (:meth:`to_bytes`)."""
        return _payload_bytes(self.kind, self.classes, self.weights.shape[1])

    def describe(self) -> dict:
        """JSON-able summary: radius, classes, features, coefficients, their storage, payload bytes."""
        return {
            "kind": "linear",
            "storage": "int8" if self.kind == KIND_INT8 else "fp16",
            "radius": self.radius,
            "classes": self.classes,
            "thresholds": [float(t) for t in self.thresholds],
            "features": self.features,
            "coefficients": int(self.weights.size),
            "bytes": self.nbytes,
        }

    def quantized(self) -> SceneHead:
        """This head with int8 codes: per class and output channel, scale = fp16(max |W| / 127) (rounded up when
        rounding to fp16 went down), codes = round(W / scale) clipped to -127..127 (0 where the scale is 0)."""
        if self.scales is not None:
            return self
        w = self.weights.astype(np.float32)
        top = np.abs(w).max(axis=1)  # [C, 3]
        sc = (top / 127.0).astype(np.float16)
        low = sc.astype(np.float32) * 127.0 < top
        sc[low] = np.nextafter(sc[low], np.float16(np.inf))
        s32 = sc.astype(np.float32)[:, None, :]
        q = np.where(s32 > 0, np.round(w / np.where(s32 > 0, s32, 1.0)), 0.0)
        return SceneHead(self.radius, self.flags, self.thresholds.copy(), np.clip(q, -127, 127).astype(np.int8), sc)

    # ---------------------------------------------------------------------------------------- serialisation
    def to_bytes(self) -> bytes:
        """The section payload (little endian): u8 version, u8 kind, u8 radius, u8 classes, u16 feature flags,
        u16 features per class, f32 [C-1] thresholds, then f16 [C, F, 3] weights (kind 1) or f16 [C, 3] scales
        and i8 [C, F, 3] codes (kind 2), C-ordered."""
        f = self.weights.shape[1]
        parts = [
            _PRE.pack(self.version, self.kind, self.radius, self.classes, self.flags, f),
            np.asarray(self.thresholds, "<f4").tobytes(),
        ]
        if self.scales is not None:
            parts.append(np.asarray(self.scales, "<f2").tobytes())
            parts.append(np.asarray(self.weights, "i1").tobytes())
        else:
            parts.append(np.asarray(self.weights, "<f2").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, *, path=None, offset: int | None = None) -> SceneHead:
        """Parse a payload written by :meth:`to_bytes`.

        Raises:
            UnknownHeadVersion: a layout version, or a kind within a known version, that this reader does not know
                (skip the section).
            FormatError: (field ``section:scene_head``) a known layout whose bytes are inconsistent: lengths,
                radius, class count, unknown feature bits, thresholds not finite and increasing in [0, 1],
                weights or scales not finite, scales negative.
        """
        field = f"section:{HEAD_SECTION}"

        def bad(detail: str) -> FormatError:
            return FormatError(f"section '{HEAD_SECTION}': {detail}", path, field=field, offset=offset)

        data = bytes(data)
        if len(data) < 2:
            raise bad(f"{len(data)} bytes, shorter than the 8-byte preamble")
        version, kind = data[0], data[1]
        kinds = (KIND_LINEAR,) if version == 1 else (KIND_LINEAR, KIND_INT8)
        if version not in HEAD_VERSIONS or kind not in kinds:
            raise UnknownHeadVersion(f"head layout version {version}, kind {kind}")
        if len(data) < _PRE.size:
            raise bad(f"{len(data)} bytes, shorter than the 8-byte preamble")
        _, _, radius, classes, flags, nf = _PRE.unpack_from(data, 0)
        lo = 1 if version == 1 else MIN_RADIUS
        if not lo <= radius <= MAX_RADIUS:
            raise bad(f"radius {radius} is outside {lo}..{MAX_RADIUS} (layout version {version})")
        if not 1 <= classes <= MAX_CLASSES:
            raise bad(f"{classes} classes, expected 1..{MAX_CLASSES}")
        known = sum(FEATURES)
        if flags & ~known:
            raise bad(f"unknown feature bits 0x{flags & ~known:04x}")
        want_f = _features_per_class(radius, flags)
        if nf != want_f:
            raise bad(f"{nf} features per class, the radius and flags imply {want_f}")
        want = _payload_bytes(kind, classes, nf)
        if len(data) != want:
            raise bad(f"{len(data)} bytes, expected {want} for {classes} class(es) of {nf} features")
        pos = _PRE.size
        th = np.frombuffer(data, "<f4", classes - 1, pos).astype(np.float32)
        if not (np.isfinite(th).all() and (th >= 0).all() and (th <= 1).all() and (np.diff(th) > 0).all()):
            raise bad("alpha thresholds must be finite, increasing and in [0, 1]")
        pos += 4 * (classes - 1)
        scales = None
        if kind == KIND_INT8:
            scales = np.frombuffer(data, "<f2", 3 * classes, pos).astype(np.float16).reshape(classes, 3)
            if not (np.isfinite(scales).all() and (scales >= 0).all()):
                raise bad("int8 scales must be finite and >= 0")
            w = np.frombuffer(data, "i1", offset=pos + 6 * classes).astype(np.int8)
        else:
            w = np.frombuffer(data, "<f2", offset=pos).astype(np.float16)
            if not np.isfinite(w).all():
                raise bad("weights hold NaN or Inf")
        return cls(int(radius), int(flags), th, w.reshape(classes, nf, 3), scales)


def _payload_bytes(kind: int, classes: int, nf: int) -> int:
    per_class = 6 * nf if kind == KIND_LINEAR else 3 * nf + 6
    return _PRE.size + 4 * (classes - 1) + classes * per_class


def section_bytes(radius: int, flags: int, classes: int, *, int8: bool = False) -> int:
    """Bytes a head of this shape adds to an .exgs file: its 32-byte section-table entry plus the payload."""
    return 32 + _payload_bytes(KIND_INT8 if int8 else KIND_LINEAR, classes, _features_per_class(radius, flags))


# ------------------------------------------------------------------------------------------------ features
def _inputs(rgb, alpha, depth, background):
    """(premultiplied rgb float32 [H, W, 3], alpha float32 [H, W], depth float32 [H, W] or None, bg or None)."""
    x = np.asarray(rgb)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else np.asarray(x, np.float32)
    a = np.asarray(alpha)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else np.asarray(a, np.float32)
    if x.ndim != 3 or x.shape[-1] != 3 or a.shape != x.shape[:2]:
        raise ValueError(f"expected rgb [H,W,3] and alpha [H,W], got {x.shape} and {a.shape}")
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
    a = np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0)
    d = None
    if depth is not None:
        d = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if d.shape != a.shape:
            raise ValueError(f"depth must be [H,W] = {a.shape}, got {d.shape}")
    bg = None
    if background is not None:
        bg = np.broadcast_to(np.asarray(background, np.float32), (3,)).astype(np.float32)
        if bg.any():
            x = np.maximum(x - (1.0 - a[..., None]) * bg, 0.0)
        else:
            bg = None
    return x, a, d, bg


def _depth_edge(a: np.ndarray, d: np.ndarray | None) -> np.ndarray:
    """e float32 [H, W] in [0, 1] (see the module docstring); zeros without depth."""
    if d is None:
        return np.zeros(a.shape, np.float32)
    dd = np.where(a > 1e-3, d, 0.0).astype(np.float32)
    cov = dd[a > 0.5]
    med = float(np.median(cov)) if cov.size else 1.0
    med = med if med > 1e-6 else 1.0
    p = np.pad(dd, 1, mode="edge")
    h, w = dd.shape
    s = np.zeros_like(dd)
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                s += np.abs(p[dy : dy + h, dx : dx + w] - dd)
    return np.minimum(s / med, 1.0)


def _extras(
    x: np.ndarray, a: np.ndarray, d: np.ndarray | None, radius: int, flags: int, cache: dict | None = None
) -> np.ndarray:
    """float32 [H, W, E]: the optional features (after the neighbourhood) in feature order. ``cache``: a dict kept
    per render, in which each feature's columns are computed once for every head that uses them."""

    def col(name: str, make) -> np.ndarray:
        if cache is None:
            return make()
        key = (name, radius if name == "mean_thin" else None)  # the window mean is the only radius-dependent one
        if key not in cache:
            cache[key] = make()
        return cache[key]

    cols = []
    om = (1.0 - a)[..., None]
    if flags & FEATURE_BITS["alpha"]:
        cols.append(col("alpha", lambda: a[..., None]))
    if flags & FEATURE_BITS["thin"]:
        cols.append(col("thin", lambda: x * om))
    if flags & FEATURE_BITS["thin2"]:
        cols.append(col("thin2", lambda: x * om * om))
    if flags & FEATURE_BITS["mean_thin"]:
        cols.append(col("mean_thin", lambda: _box_mean(x, radius) * om))
    if flags & FEATURE_BITS["depth_edge"]:
        e = col("depth_edge", lambda: _depth_edge(a, d))
        cols += [e[..., None], col("depth_edge_a", lambda: (e * a)[..., None])]
    if not cols:
        return np.zeros(a.shape + (0,), np.float32)
    return np.concatenate(cols, -1).astype(np.float32)


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """[H, W, 3] mean over the (2r+1)^2 window, edges replicated (summed-area table)."""
    k = 2 * r + 1
    p = np.pad(x, ((r, r), (r, r), (0, 0)), mode="edge").astype(np.float64)
    c = np.zeros((p.shape[0] + 1, p.shape[1] + 1, 3))
    c[1:, 1:] = p.cumsum(0).cumsum(1)
    h, w = x.shape[:2]
    s = c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]
    return (s / (k * k)).astype(np.float32)


def _classes(a: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return np.digitize(a, np.asarray(thresholds, np.float32)).astype(np.intp)


# ------------------------------------------------------------------------------------------------ apply
#: Pixels per chunk of :func:`apply_head`'s neighbourhood term (bounds its temporaries: pixels x 3C float32, 9 MB
#: with three classes).
_CHUNK_PIXELS = 1 << 18


def apply_head(
    head: SceneHead, rgb: np.ndarray, alpha: np.ndarray, depth: np.ndarray | None = None, *, background=None
):
    """Run ``head`` on one render of the scene it was fitted for.

    Args:
        head: the file's :class:`SceneHead` (``scene.meta["exgs_head"]`` of a decoded .exgs, :func:`scene_head`).
        rgb: [H, W, 3] float (>= 0) or uint8, the render composited over ``background`` (black by default).
        alpha: [H, W] float in [0, 1] or uint8, the render's accumulated opacity.
        depth: [H, W] float32 camera-z depth (world units, 0 where nothing was drawn), as the renderer returns it;
            only heads with the ``depth_edge`` feature read it, and without it their depth features are 0.
        background: float or [3] colour the render was composited over; taken out before and put back after.

    Returns:
        float32 [H, W, 3], the restored colour (same background), >= 0 and at most max(1, max of ``rgb``).
        Pixels whose whole neighbourhood is empty (colour and alpha 0) come back unchanged: every feature is 0.
    """
    return _apply(head, HeadFrame(rgb, alpha, depth, background))


class HeadFrame:
    """One render's inputs to a head (as :func:`apply_head` takes them), with what several heads share computed
    once and kept: the optional features per (radius, flags) and the edge-padded colour per radius. An encoder
    judging several candidate heads on the same render builds one per render (:func:`head_gains`)."""

    def __init__(self, rgb, alpha, depth=None, background=None):
        self.x, self.a, self.d, self.bg = _inputs(rgb, alpha, depth, background)
        self._extras: dict = {}
        self._columns: dict = {}
        self._padded: dict = {}

    def extras(self, radius: int, flags: int) -> np.ndarray:
        """float32 [H*W, E]: :func:`_extras` (the window mean of ``mean_thin`` is the only radius-dependent one)."""
        key = (radius if flags & FEATURE_BITS["mean_thin"] else -1, flags)
        if key not in self._extras:
            e = _extras(self.x, self.a, self.d, radius, flags, self._columns)
            self._extras[key] = e.reshape(-1, e.shape[-1])
        return self._extras[key]

    def padded(self, radius: int) -> np.ndarray:
        """float32 [H + 2r, W + 2r, 3]: the colour with its edges replicated ``radius`` pixels out."""
        if radius not in self._padded:
            r = radius
            self._padded[r] = np.pad(self.x, ((r, r), (r, r), (0, 0)), mode="edge")
        return self._padded[radius]


def _apply(head: SceneHead, frame: HeadFrame) -> np.ndarray:
    """:func:`apply_head` on a prepared frame."""
    x, a, bg = frame.x, frame.a, frame.bg
    h, w = a.shape
    r = head.radius
    k = 2 * r + 1
    c = head.classes
    wt = head.coefficients()  # [C, F, 3]
    nn = 3 * k * k
    wn = np.ascontiguousarray(wt[:, :nn, :].transpose(1, 0, 2).reshape(nn, 3 * c))
    we = np.ascontiguousarray(wt[:, nn:, :].transpose(1, 0, 2).reshape(-1, 3 * c))
    res = frame.extras(r, head.flags) @ we if we.size else np.zeros((h * w, 3 * c), np.float32)
    p = frame.padded(r)
    w4 = wn.reshape(3, k, k, 3 * c)  # the neighbourhood's rows are (channel, dy, dx)
    rows = max(1, _CHUNK_PIXELS // max(w, 1))
    for y0 in range(0, h, rows):  # the neighbourhood term as k x k shifted copies times their 3 x 3C weights
        y1 = min(h, y0 + rows)
        acc = res[y0 * w : y1 * w].reshape(y1 - y0, w, 3 * c)  # a view into res
        for dy in range(k):
            for dx in range(k):
                acc += p[y0 + dy : y1 + dy, dx : dx + w] @ w4[:, dy, dx]
    out: np.ndarray = res  # one class: the residual as it is
    if c > 1:
        cls = _classes(a, head.thresholds).reshape(-1)
        out = np.take_along_axis(res.reshape(h * w, c, 3), cls[:, None, None], axis=1)[:, 0]
    top = max(1.0, float(x.max(initial=0.0)))
    y = np.clip(x + out.reshape(h, w, 3), 0.0, top)
    if bg is not None:
        y = y + (1.0 - a[..., None]) * bg
    return y.astype(np.float32)


def scene_head(scene) -> SceneHead | None:
    """The head a decoded .exgs scene carries (``scene.meta["exgs_head"]``), else None."""
    head = getattr(scene, "meta", {}).get("exgs_head")
    return head if isinstance(head, SceneHead) else None


def restoration_head(scene) -> SceneHead | None:
    """The head that restores renders of ``scene`` (the ``head`` a restorer takes): the one a decoded .exgs
    carries; for a decoded .exgs without one, :meth:`SceneHead.identity` (its encoder found no head worth its bytes,
    or was told not to fit one, or the file predates heads); None for scenes read from other formats, which
    GaussPainter's network restores.

    A file's head stands in for the network: the network runs after it only for weights whose config sets
    ``after_head`` (the shipped weights do not), so a head-less .exgs comes back as rendered. On this compressor's
    output the network's residual mostly points the wrong way: its least-squares scales on the training scenes are
    near or below 0 in every alpha bin with and without heads, a retrain on .exgs decodes calibrated to 0 in holes
    and on covered pixels, and on the validation files without a head it changed PSNR by -0.54 to +0.13 dB
    (MODEL_CARD.md)."""
    head = scene_head(scene)
    if head is None and getattr(scene, "meta", {}).get("format") == "exgs":
        return SceneHead.identity()
    return head


# ------------------------------------------------------------------------------------------------ fitting
class HeadFitter:
    """Accumulates the normal equations of the head, per alpha class, over training views; :meth:`solve` gives
    the head with those classes or, pooling them, a one-class head (so one pass over the views serves both).

    Args:
        radius: neighbourhood radius r.
        features: names from :data:`FEATURES`.
        thresholds: alpha thresholds of the classes (increasing, in [0, 1]).
        sample: fraction of each view's pixels used (a seeded random subset).
        seed: the subset's seed.
    """

    def __init__(
        self,
        radius: int = DEFAULT_RADIUS,
        features: Iterable[str] = DEFAULT_FEATURES,
        thresholds: Iterable[float] = (0.3, 0.98),
        sample: float = 0.25,
        seed: int = 0,
    ):
        if not MIN_RADIUS <= radius <= MAX_RADIUS:
            raise ValueError(f"radius must be in {MIN_RADIUS}..{MAX_RADIUS}, got {radius}")
        unknown = set(features) - set(FEATURE_BITS)
        if unknown:
            raise ValueError(f"unknown head features {sorted(unknown)}; known: {list(FEATURE_BITS)}")
        self.radius = int(radius)
        self.flags = sum(FEATURE_BITS[f] for f in set(features))
        self.thresholds = np.asarray(sorted(float(t) for t in thresholds), np.float32)
        if len(self.thresholds) + 1 > MAX_CLASSES or ((self.thresholds < 0) | (self.thresholds > 1)).any():
            raise ValueError(f"at most {MAX_CLASSES - 1} thresholds in [0, 1], got {list(self.thresholds)}")
        if not 0 < sample <= 1:
            raise ValueError(f"sample must be in (0, 1], got {sample}")
        self.sample, self.seed = float(sample), int(seed)
        nf = _features_per_class(self.radius, self.flags)
        c = len(self.thresholds) + 1
        self.gram = np.zeros((c, nf, nf))
        self.rhs = np.zeros((c, nf, 3))
        self.views = 0

    def features(self, rgb, alpha, depth=None, *, background=None, pixels: np.ndarray | None = None):
        """(phi float32 [P, F], class int [P], premultiplied x float32 [P, 3]) at the flat pixel indices
        ``pixels`` (all pixels when None), exactly as :func:`apply_head` computes them."""
        x, a, d, _ = _inputs(rgb, alpha, depth, background)
        h, w = a.shape
        r, k = self.radius, 2 * self.radius + 1
        idx = np.arange(h * w) if pixels is None else np.asarray(pixels)
        ys, xs = idx // w, idx % w
        p = np.pad(x, ((r, r), (r, r), (0, 0)), mode="edge")
        nb = sliding_window_view(p, (k, k), axis=(0, 1))[ys, xs]  # type: ignore[call-overload]  # [P, 3, k, k]
        ex = _extras(x, a, d, r, self.flags).reshape(h * w, -1)[idx]
        return (
            np.concatenate([nb.reshape(len(idx), -1), ex], 1),
            _classes(a.reshape(-1)[idx], self.thresholds),
            x.reshape(-1, 3)[idx],
        )

    def add(self, rgb, alpha, depth, target) -> None:
        """One training view: the decoded scene's render (``rgb`` [H, W, 3], ``alpha``, ``depth`` [H, W]) and the
        original scene's render ``target`` [H, W, 3] of the same camera, both over black (the target is clipped to
        [0, 1], as the metrics see it)."""
        t, _, _, _ = _inputs(target, np.ones(np.shape(alpha)[:2], np.float32), None, None)
        t = np.clip(t, 0.0, 1.0)  # what the metrics compare against
        xf, _, _, _ = _inputs(rgb, alpha, None, None)
        mse = float(((xf - t) ** 2).mean()) if t.size else 0.0
        h, w = t.shape[:2]
        n = h * w
        if n == 0:
            return
        m = max(1, int(round(n * self.sample)))
        rng = np.random.default_rng([self.seed, self.views])
        pixels = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
        phi, cls, x = self.features(rgb, alpha, depth, pixels=pixels)
        y = t.reshape(-1, 3)[pixels] - x
        wv = 1.0 / max(mse, MIN_VIEW_MSE)
        order = np.argsort(cls, kind="stable")
        ends = np.searchsorted(cls[order], np.arange(self.gram.shape[0] + 1))
        phi, y = phi[order], y[order]
        for ci in range(self.gram.shape[0]):
            f, t = phi[ends[ci] : ends[ci + 1]], y[ends[ci] : ends[ci + 1]]
            if len(f):
                self.gram[ci] += wv * (f.T @ f).astype(np.float64)
                self.rhs[ci] += wv * (f.T @ t).astype(np.float64)
        self.views += 1

    def solve(
        self,
        *,
        classes: bool = True,
        ridge: float = 1e-3,
        int8: bool = False,
        radius: int | None = None,
        features: Iterable[str] | None = None,
    ) -> SceneHead:
        """The head minimising the weighted squared error plus ``ridge`` x (mean diagonal of the Gram matrix) x
        |W|^2 per class; ``classes=False`` pools the classes into one filter. Coefficients are rounded to fp16, or
        with ``int8`` stored as int8 codes and scales (:meth:`SceneHead.quantized`).

        ``radius`` / ``features``: a smaller head whose features are a subset of this fitter's (a radius up to its
        own; ``mean_thin`` only at its own radius, the window mean depends on it), solved from the matching rows and
        columns of the same normal equations: the head a fitter of that shape would give on the same pixels."""
        if self.views == 0:
            raise ValueError("no training views were added")
        r = self.radius if radius is None else int(radius)
        flags = self.flags if features is None else sum(FEATURE_BITS[f] for f in set(features))
        idx = self._subset(r, flags)
        grams, rhss = self.gram[:, idx][:, :, idx], self.rhs[:, idx]
        if not classes:
            grams, rhss = grams.sum(0, keepdims=True), rhss.sum(0, keepdims=True)
        ws = []
        for g, b in zip(grams, rhss, strict=True):
            scale = float(np.trace(g)) / len(g)
            reg = ridge * scale if scale > 0 else 1.0
            ws.append(np.linalg.solve(g + (reg + 1e-12) * np.eye(len(g)), b))
        w = np.clip(np.stack(ws), -60000.0, 60000.0).astype(np.float16)
        th = self.thresholds if classes else np.zeros(0, np.float32)
        head = SceneHead(r, flags, th.copy(), w)
        return head.quantized() if int8 else head

    def _subset(self, radius: int, flags: int) -> np.ndarray:
        """Indices into this fitter's features of a head with ``radius`` and feature ``flags`` (feature order)."""
        if not 0 <= radius <= self.radius or flags & ~self.flags:
            raise ValueError(
                f"radius {radius} / features 0x{flags:x} are not within the fitter's {self.radius} / 0x{self.flags:x}"
            )
        if radius != self.radius and flags & FEATURE_BITS["mean_thin"]:
            raise ValueError("mean_thin depends on the radius: solve it at the fitter's own radius")
        k, k2 = 2 * self.radius + 1, 2 * radius + 1
        off = self.radius - radius
        idx = [c * k * k + (dy + off) * k + (dx + off) for c in range(3) for dy in range(k2) for dx in range(k2)]
        pos = 3 * k * k
        for bit, (_, n) in FEATURES.items():
            if self.flags & bit:
                if flags & bit:
                    idx += range(pos, pos + n)
                pos += n
        return np.asarray(idx, np.intp)


def head_gain(
    head: SceneHead, frames: Iterable[tuple], before: tuple[float, float] | None = None, *, ssim: bool = True
) -> dict:
    """Mean per-view PSNR (dB) of the unrestored and the restored renders against the targets.

    ``frames``: (rgb [H, W, 3], alpha [H, W], depth [H, W] or None, target [H, W, 3] or its
    :class:`~exgs_core.msssim.MsSsimTarget`) over black; both images are clipped to [0, 1] before measuring, as
    :func:`exgs_core.metrics.psnr` does. Returns ``{"before", "after", "gain", "ssim_gain", "views"}`` (``gain`` =
    after - before, mean over views, in dB; ``ssim_gain`` the same for :func:`~exgs_core.msssim.ms_ssim`, NaN with
    ``ssim=False``, which skips it). ``before``: the unrestored (PSNR, MS-SSIM) of these frames,
    :func:`unrestored_scores`, when the caller has it already (several candidates judged on the same frames)."""
    return head_gains([head], frames, before, ssim=ssim)[0]


def head_gains(
    heads: list[SceneHead], frames: Iterable[tuple], before: tuple[float, float] | None = None, *, ssim: bool = True
) -> list[dict]:
    """:func:`head_gain` of each of ``heads`` on the same ``frames``, in one pass over them: a frame's inputs and the
    features heads of one shape share are computed once (:class:`HeadFrame`)."""
    frames = list(frames)
    if not frames:
        return [{"before": math.nan, "after": math.nan, "gain": 0.0, "ssim_gain": 0.0, "views": 0} for _ in heads]
    b = unrestored_scores(frames, ssim=ssim) if before is None else before
    return [
        {"before": b[0], "after": a[0], "gain": a[0] - b[0], "ssim_gain": a[1] - b[1], "views": len(frames)}
        for a in _scores(list(heads), frames, ssim)
    ]


def unrestored_scores(frames: Iterable[tuple], *, ssim: bool = True) -> tuple[float, float]:
    """(mean PSNR in dB, mean MS-SSIM or NaN with ``ssim=False``) of the renders of ``frames`` (as in
    :func:`head_gain`) as they are."""
    return _scores([None], list(frames), ssim)[0]


def _scores(heads: list, frames: list, ssim: bool = True) -> list[tuple[float, float]]:
    """(mean PSNR, mean MS-SSIM or NaN) over ``frames`` of the renders, restored by each of ``heads`` (None: as
    they are)."""
    from ..msssim import MsSsimTarget, ms_ssim  # numba: the encoder's and the benchmarks' measure, not the reader's

    p = np.zeros((len(heads), len(frames)))
    s = np.full((len(heads), len(frames)), math.nan)
    for j, (rgb, alpha, depth, target) in enumerate(frames):
        ref = target if isinstance(target, MsSsimTarget) else None
        t = ref.image if ref is not None else np.clip(np.asarray(target, np.float32), 0.0, 1.0)
        x = np.asarray(rgb, np.float32)
        frame = None
        for i, head in enumerate(heads):
            if head is None:
                y = np.clip(x, 0.0, 1.0)
            else:
                frame = frame or HeadFrame(x, alpha, depth)
                y = np.clip(_apply(head, frame), 0.0, 1.0)
            p[i, j] = _psnr(y, t)
            if ssim:
                s[i, j] = ms_ssim(y, ref if ref is not None else t)
    return [(float(pi.mean()), float(si.mean())) for pi, si in zip(p, s, strict=True)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))
