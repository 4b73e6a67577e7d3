"""Scalar and rotation quantisers of the .exgs codec (docs/FORMAT.md, section 5). Encoders and decoders in pairs.

Decoders use only element-wise float32 multiply/add/sqrt/divide (IEEE, correctly rounded), so every machine
decodes the same bits.

>>> import numpy as np
>>> x = np.array([[0.0], [0.3], [1.0]], np.float32)
>>> lo, step = uniform_params(x, 8)
>>> codes = uniform_encode(x, lo, step, 8)
>>> codes.tolist(), bool(np.abs(uniform_decode(codes, lo, step) - x).max() <= step[0] / 2 + 1e-7)
([[0, 76, 255]], True)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "uniform_params",
    "uniform_encode",
    "uniform_decode",
    "uniform_dtype",
    "smallest3_encode",
    "smallest3_decode",
    "smallest3_step",
    "smallest3_max_angle",
    "rotation_word_dtype",
    "opacity_encode",
    "opacity_decode",
    "opacity_table",
    "rotation_angle",
]

INV_SQRT2 = 1.0 / math.sqrt(2.0)
# the three "other" components for each index of the largest one (w, x, y, z order)
_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]], np.int64)


# ------------------------------------------------------------------------------------------ uniform


def uniform_dtype(bits: int) -> np.dtype:
    """Storage type of ``bits``-bit codes: uint8 up to 8 bits, else uint16 (bits <= 16)."""
    return np.dtype(np.uint8) if bits <= 8 else np.dtype(np.uint16)


def uniform_params(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(min f32 [C], step f32 [C]) of a uniform quantiser with 2^bits levels over each column's [min, max].

    Args:
        x: float32 [N, C] finite values.
        bits: 1..16 (positions use up to 21).

    Returns:
        ``min`` and ``step = (max - min) / (2^bits - 1)`` per column, both float32; step 0 for a constant column;
        zeros when N = 0.
    """
    x = np.asarray(x, dtype=np.float32)
    c = x.shape[1]
    if x.shape[0] == 0:
        return np.zeros(c, np.float32), np.zeros(c, np.float32)
    lo = x.min(axis=0).astype(np.float32)
    hi = x.max(axis=0).astype(np.float32)
    step = ((hi.astype(np.float64) - lo.astype(np.float64)) / float((1 << bits) - 1)).astype(np.float32)
    return lo, step


def uniform_encode(x: np.ndarray, lo: np.ndarray, step: np.ndarray, bits: int, dtype=None) -> np.ndarray:
    """Codes [C, N] (planar, channel-major) of float32 ``x`` [N, C]: ``clamp(round((x - min) / step), 0,
    2^bits - 1)``, 0 where step is 0. dtype defaults to :func:`uniform_dtype`."""
    x = np.asarray(x, dtype=np.float64)
    top = (1 << bits) - 1
    lo64 = np.asarray(lo, np.float64)
    st64 = np.asarray(step, np.float64)
    safe = np.where(st64 > 0, st64, 1.0)
    q = np.rint((x - lo64) / safe)
    q = np.where(st64 > 0, q, 0.0)
    q = np.clip(q, 0, top)
    dt = uniform_dtype(bits) if dtype is None else dtype
    return np.ascontiguousarray(q.T.astype(dt))


def uniform_decode(codes: np.ndarray, lo: np.ndarray, step: np.ndarray) -> np.ndarray:
    """float32 [N, C] values ``min + f32(code) * step`` of planar ``codes`` [C, N]."""
    lo = np.asarray(lo, np.float32)
    step = np.asarray(step, np.float32)
    out = codes.T.astype(np.float32)
    out *= step
    out += lo
    return out


# ------------------------------------------------------------------------------------------ rotations


def smallest3_step(bits: int) -> float:
    """Quantisation step of one smallest-three component: sqrt(2) / (2^bits - 1)."""
    return math.sqrt(2.0) / ((1 << bits) - 1)


def smallest3_max_angle(bits: int) -> float:
    """Documented upper bound (radians) of the rotation angle between a unit quaternion and its smallest-three
    decode: ``2 sqrt3 e / (1/2 - sqrt3 e)`` with ``e = step / 2`` (0.275 degrees for 10 bits)."""
    e = smallest3_step(bits) / 2.0
    r = math.sqrt(3.0) * e
    if r >= 0.5:
        return math.pi
    return min(math.pi, 2.0 * r / (0.5 - r))


def rotation_word_dtype(bits: int) -> np.dtype:
    """uint32 when 3 bits + 2 <= 32, else uint64."""
    return np.dtype(np.uint32) if 3 * bits + 2 <= 32 else np.dtype(np.uint64)


def smallest3_encode(quats: np.ndarray, bits: int) -> np.ndarray:
    """Packed smallest-three words [N] (``idx << 3b | c0 << 2b | c1 << b | c2``) of quaternions [N, 4] wxyz.

    Quaternions must have a non-zero finite norm (callers sanitise first); they are normalised here."""
    q = np.asarray(quats, dtype=np.float64)
    n = q.shape[0]
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    idx = np.argmax(np.abs(q), axis=1)  # first on ties
    rows = np.arange(n)
    q = q * np.where(q[rows, idx] < 0, -1.0, 1.0)[:, None]
    o = q[rows[:, None], _OTHERS[idx]]  # [N, 3]
    top = (1 << bits) - 1
    c = np.clip(np.rint((o + INV_SQRT2) / smallest3_step(bits)), 0, top).astype(np.uint64)
    b = np.uint64(bits)
    w = (idx.astype(np.uint64) << (np.uint64(3) * b)) | (c[:, 0] << (np.uint64(2) * b)) | (c[:, 1] << b) | c[:, 2]
    return w.astype(rotation_word_dtype(bits))


def smallest3_decode(words: np.ndarray, bits: int) -> np.ndarray:
    """float32 [N, 4] normalised wxyz quaternions from packed words (see :func:`smallest3_encode`).
    The caller has checked that ``words >> (3 bits + 2) == 0``."""
    w = np.asarray(words).astype(np.uint64)
    n = w.shape[0]
    b = np.uint64(bits)
    mask = np.uint64((1 << bits) - 1)
    idx = (w >> (np.uint64(3) * b)).astype(np.int64)
    s = np.float32(smallest3_step(bits))
    h = np.float32(INV_SQRT2)
    v0 = ((w >> (np.uint64(2) * b)) & mask).astype(np.float32) * s - h
    v1 = ((w >> b) & mask).astype(np.float32) * s - h
    v2 = (w & mask).astype(np.float32) * s - h
    t = v0 * v0 + v1 * v1
    t = t + v2 * v2
    big = np.sqrt(np.maximum(np.float32(1.0) - t, np.float32(0.0)))
    nrm = np.sqrt(t + big * big)
    out = np.empty((n, 4), np.float32)
    rows = np.arange(n)
    oth = _OTHERS[idx]
    out[rows, oth[:, 0]] = v0 / nrm
    out[rows, oth[:, 1]] = v1 / nrm
    out[rows, oth[:, 2]] = v2 / nrm
    out[rows, idx] = big / nrm
    return out


def rotation_angle(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Rotation angle (radians, float64 [N]) between the rotations of quaternions q1 and q2 [N, 4] (either
    sign; normalised here): ``2 acos(|<q1, q2>|)``."""
    a = np.asarray(q1, np.float64)
    b = np.asarray(q2, np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    d = np.clip(np.abs((a * b).sum(axis=1)), 0.0, 1.0)
    # 2 acos(d) loses precision near d = 1: use 4 asin(|a - sign b| / 2)
    s = np.where((a * b).sum(axis=1)[:, None] < 0, -b, b)
    chord = np.linalg.norm(a - s, axis=1)
    return np.where(d > 0.9, 4.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)), 2.0 * np.arccos(d))


# ------------------------------------------------------------------------------------------ opacity


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def opacity_encode(logits: np.ndarray, bits: int) -> np.ndarray:
    """Codes [N] of ``min(floor(sigmoid(logit) 2^bits), 2^bits - 1)`` (uint8 up to 8 bits, else uint16)."""
    p = _sigmoid64(logits)
    top = (1 << bits) - 1
    q = np.minimum(np.floor(p * float(1 << bits)), top)
    return q.astype(uniform_dtype(bits))


def opacity_table(bits: int) -> np.ndarray:
    """float32 [2^bits] logits of the bin centres ``(q + 0.5) / 2^bits``, computed in double."""
    p = (np.arange(1 << bits, dtype=np.float64) + 0.5) / float(1 << bits)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


def opacity_decode(codes: np.ndarray, bits: int) -> np.ndarray:
    """float32 [N] logits of opacity codes (the caller has checked codes < 2^bits)."""
    return opacity_table(bits)[np.asarray(codes).astype(np.int64)]
