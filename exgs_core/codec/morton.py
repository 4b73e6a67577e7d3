"""Morton (Z-order) codes of quantised 3-D positions, vectorised with NumPy (up to 21 bits per axis).

Bit i of x goes to bit 3i of the code, bit i of y to 3i+1, bit i of z to 3i+2.

>>> import numpy as np
>>> q = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 5, 7]], np.uint32)
>>> encode(q).tolist()
[1, 2, 4, 431]
>>> bool((decode(encode(q)) == q).all())
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_BITS", "encode", "decode", "order"]

MAX_BITS = 21

_U = np.uint64
_SPREAD = [  # (shift, mask) steps that spread 21 bits to every third bit
    (32, 0x1F00000000FFFF),
    (16, 0x1F0000FF0000FF),
    (8, 0x100F00F00F00F00F),
    (4, 0x10C30C30C30C30C3),
    (2, 0x1249249249249249),
]


def _spread(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64) & _U(0x1FFFFF)
    for shift, mask in _SPREAD:
        v = (v | (v << _U(shift))) & _U(mask)
    return v


def _compact(v: np.ndarray) -> np.ndarray:
    v = v & _U(0x1249249249249249)
    v = (v ^ (v >> _U(2))) & _U(0x10C30C30C30C30C3)
    v = (v ^ (v >> _U(4))) & _U(0x100F00F00F00F00F)
    v = (v ^ (v >> _U(8))) & _U(0x1F0000FF0000FF)
    v = (v ^ (v >> _U(16))) & _U(0x1F00000000FFFF)
    v = (v ^ (v >> _U(32))) & _U(0x1FFFFF)
    return v


def encode(q: np.ndarray) -> np.ndarray:
    """uint64 [N] Morton codes of integer coordinates ``q`` [N, 3] (each < 2^21)."""
    q = np.asarray(q)
    return _spread(q[:, 0]) | (_spread(q[:, 1]) << _U(1)) | (_spread(q[:, 2]) << _U(2))


def decode(codes: np.ndarray) -> np.ndarray:
    """uint32 [N, 3] coordinates of uint64 Morton ``codes`` [N] (inverse of :func:`encode`)."""
    c = np.asarray(codes, dtype=np.uint64)
    out = np.empty((c.shape[0], 3), np.uint32)
    for a in range(3):
        out[:, a] = _compact(c >> _U(a))
    return out


def order(codes: np.ndarray) -> np.ndarray:
    """int64 [N] permutation sorting ``codes`` ascending, ties in input order (stable)."""
    return np.argsort(codes, kind="stable")
