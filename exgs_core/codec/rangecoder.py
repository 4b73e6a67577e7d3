"""Codec 2 of .exgs sections: an adaptive binary range coder with one context model per attribute
(docs/FORMAT.md, section 4.1).

zstd (codec 1) sees the quantised attributes as bytes and finds almost nothing to remove in them: on a pruned
biker (15,275 Gaussians) it stores 6-bit colours in 5.2 bits each and 23-bit rotation words in 23.5 bits. The
attributes are far from uniform, though: the three colour channels of a Gaussian are strongly correlated, and so
are its three log-scales. These models code each Gaussian's values in stored (Morton) order with adaptive binary
probabilities (the LZMA range coder: 11-bit probabilities, adaptation shift 5, 32-bit range, carry propagation
through a cached byte), conditioned on what is already known:

- ``scalar`` (opacity): the value's bits in a binary tree, in 8 contexts = the previous Gaussian's top 3 bits.
- ``triple`` (log-scales, DC colour; planes [3, N]): channel 0 in 8 contexts (the previous Gaussian's channel 0,
  top 3 bits), then ``(c1 - c0) mod 2^b`` in 8 contexts (this Gaussian's channel 0, top 3 bits), then
  ``(c2 - c1) mod 2^b`` in 11 contexts (the sign and magnitude class of the signed ``c1 - c0``).
- ``rotation`` (packed smallest-three words): the 2-bit index in 4 contexts (the previous index), then the three
  components, each in its own context per index.
- ``morton`` (positions: non-decreasing Morton codes): each gap to the previous code as its bit length (a 6-bit
  tree, 16 contexts = the previous gap's bit length / 4), the two bits below the leading one adaptively (per bit
  length), and the rest as equiprobable bits.

Values wider than 8 bits code their top 8 bits in the tree and each lower bit with one probability per bit
position (per context). One implementation serves both directions (``enc`` flag), so encoder and decoder cannot
disagree about the model. Decoding never reads outside its input: bytes past the end read as 0 and are counted,
the models stop at the end of the first record that read past the end (a cut payload costs what its bytes code,
not N values of zeros), and the caller refuses a payload whose decoder did not consume exactly its length. Before
allocating, :func:`decode` refuses a count no payload of that size can hold (:func:`max_values`).

>>> import numpy as np
>>> v = (np.arange(1000) * 7 % 100).astype(np.uint8)
>>> data = encode("scalar", v, 7)
>>> bool((decode("scalar", data, 7, 1000, np.uint8) == v).all())
True
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["MODELS", "RangeError", "encode", "decode", "max_values"]

#: Section models of codec 2 (docs/FORMAT.md 4.1): name -> number of planes of the raw array.
MODELS = {"scalar": 1, "triple": 3, "rotation": 1, "morton": 1}

_TOP = 1 << 24
_PBITS = 11
_PONE = 1 << _PBITS
_MOVE = 5
_M32 = 0xFFFFFFFF

# The coder state is a tuple (low, range, cache, cache_size, pos, code) of int64, threaded through every call so
# that numba keeps it in registers.

# What a model run reports: done, a decoded Morton code out of range, or the decoder read past the end of its
# payload (it stops at the end of the record where that happens instead of decoding zeros for every value left).
_OK = 0
_BAD_CODE = 1
_PAST_END = 2


class RangeError(Exception):
    """A range-coded payload cannot be decoded (the container names the section)."""


# ------------------------------------------------------------------------------------------------ the coder


@njit(cache=True, inline="always")
def _shift_low(s, buf):
    low, rng, cache, csize, pos, code = s
    if low < 0xFF000000 or low >= (1 << 32):
        carry = low >> 32
        temp = cache
        while True:
            buf[pos] = (temp + carry) & 0xFF
            pos += 1
            temp = 0xFF
            csize -= 1
            if csize == 0:
                break
        cache = (low >> 24) & 0xFF
    return ((low & 0x00FFFFFF) << 8, rng, cache, csize + 1, pos, code)


@njit(cache=True, inline="always")
def _normalize(s, buf, enc):
    while s[1] < _TOP:
        if enc:
            s = _shift_low((s[0], (s[1] << 8) & _M32, s[2], s[3], s[4], s[5]), buf)
        else:
            pos = s[4]
            byte = np.int64(buf[pos]) if pos < buf.shape[0] else np.int64(0)  # past the end: 0, counted in pos
            s = (s[0], (s[1] << 8) & _M32, s[2], s[3], pos + 1, ((s[5] << 8) | byte) & _M32)
    return s


@njit(cache=True, inline="always")
def _bit(s, buf, probs, k, bit, enc):
    """Code one binary decision with the adaptive probability ``probs[k]`` (of a 0); returns (state, bit)."""
    p = probs[k]
    rng = s[1]
    bound = (rng >> _PBITS) * p
    if enc:
        if bit == 0:
            s = (s[0], bound, s[2], s[3], s[4], s[5])
            probs[k] = p + ((_PONE - p) >> _MOVE)
        else:
            s = (s[0] + bound, rng - bound, s[2], s[3], s[4], s[5])
            probs[k] = p - (p >> _MOVE)
    elif s[5] < bound:
        s = (s[0], bound, s[2], s[3], s[4], s[5])
        probs[k] = p + ((_PONE - p) >> _MOVE)
        bit = 0
    else:
        s = (s[0], rng - bound, s[2], s[3], s[4], s[5] - bound)
        probs[k] = p - (p >> _MOVE)
        bit = 1
    return _normalize(s, buf, enc), bit


@njit(cache=True, inline="always")
def _direct(s, buf, bit, enc):
    """One equiprobable bit (no adaptation); returns (state, bit)."""
    half = s[1] >> 1
    if enc:
        s = (s[0] + half if bit else s[0], half, s[2], s[3], s[4], s[5])
    elif s[5] >= half:
        s = (s[0], half, s[2], s[3], s[4], s[5] - half)
        bit = 1
    else:
        s = (s[0], half, s[2], s[3], s[4], s[5])
        bit = 0
    return _normalize(s, buf, enc), bit


@njit(cache=True)
def _value(s, buf, probs, base, bits, v, enc):
    """A ``bits``-wide value: its top min(bits, 8) bits in a binary tree at ``probs[base + 1 ..]``, the lower
    bits with one probability each after the tree (a block of 2^min(bits, 8) + max(bits - 8, 0) probabilities
    from ``base``). Returns (state, value)."""
    t = bits if bits < 8 else 8
    extra = bits - t
    node = 1
    for j in range(t - 1, -1, -1):
        b = (v >> (j + extra)) & 1 if enc else 0
        s, b = _bit(s, buf, probs, base + node, b, enc)
        node = (node << 1) | b
    out = node - (1 << t)
    for j in range(extra - 1, -1, -1):
        b = (v >> j) & 1 if enc else 0
        s, b = _bit(s, buf, probs, base + (1 << t) + j, b, enc)
        out = (out << 1) | b
    return s, out


@njit(cache=True)
def _class(r):
    """Sign and magnitude class of a signed residual: 0 for 0, 1..5 for +1, +2..3, +4..7, +8..15, >= 16,
    6..10 for the same negative magnitudes."""
    if r == 0:
        return 0
    a = r if r > 0 else -r
    c = 1
    while a > 1 and c < 5:
        a >>= 1
        c += 1
    return c if r > 0 else c + 5


@njit(cache=True)
def _bitlen(d):
    n = 0
    while d > 0:
        d >>= 1
        n += 1
    return n


# ------------------------------------------------------------------------------------------------ the models
# Each returns (final coder state, status): the decoder stops early, with _PAST_END, at the end of the first record
# that read past its payload (so a cut payload costs what its bytes can code, not N values), or with _BAD_CODE
# when a Morton code leaves its range.


@njit(cache=True, nogil=True)
def _run_scalar(s, buf, vals, bits, enc):
    blk = (1 << min(bits, 8)) + max(bits - 8, 0)
    probs = np.full(8 * blk, _PONE // 2, np.int64)
    sh = bits - 3 if bits > 3 else 0
    prev = 0
    end = buf.shape[0]
    for i in range(vals.shape[0]):
        s, v = _value(s, buf, probs, (prev >> sh) * blk, bits, vals[i], enc)
        vals[i] = v
        prev = v
        if not enc and s[4] > end:
            return s, _PAST_END
    return s, _OK


@njit(cache=True, nogil=True)
def _run_triple(s, buf, vals, bits, enc):
    """``vals`` [3, N]: channel 0, then the wrapped differences c1 - c0 and c2 - c1."""
    blk = (1 << min(bits, 8)) + max(bits - 8, 0)
    probs = np.full((8 + 8 + 11) * blk, _PONE // 2, np.int64)
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)
    sh = bits - 3 if bits > 3 else 0
    prev = 0
    end = buf.shape[0]
    for i in range(vals.shape[1]):
        s, a = _value(s, buf, probs, (prev >> sh) * blk, bits, vals[0, i], enc)
        s, r1 = _value(s, buf, probs, (8 + (a >> sh)) * blk, bits, (vals[1, i] - a) & mask, enc)
        b = (a + r1) & mask
        s1 = r1 - (1 << bits) if r1 >= half else r1
        s, r2 = _value(s, buf, probs, (16 + _class(s1)) * blk, bits, (vals[2, i] - b) & mask, enc)
        vals[0, i] = a
        vals[1, i] = b
        vals[2, i] = (b + r2) & mask
        prev = a
        if not enc and s[4] > end:
            return s, _PAST_END
    return s, _OK


@njit(cache=True, nogil=True)
def _run_rotation(s, buf, vals, bits, enc):
    blk = (1 << min(bits, 8)) + max(bits - 8, 0)
    probs_i = np.full(4 * 4, _PONE // 2, np.int64)
    probs = np.full(12 * blk, _PONE // 2, np.int64)
    mask = (1 << bits) - 1
    prev = 0
    end = buf.shape[0]
    for i in range(vals.shape[0]):
        w = vals[i]
        s, idx = _value(s, buf, probs_i, prev * 4, 2, w >> (3 * bits), enc)
        out = idx
        for j in range(3):
            s, c = _value(s, buf, probs, (idx * 3 + j) * blk, bits, (w >> ((2 - j) * bits)) & mask, enc)
            out = (out << bits) | c
        vals[i] = out
        prev = idx
        if not enc and s[4] > end:
            return s, _PAST_END
    return s, _OK


@njit(cache=True, nogil=True)
def _run_morton(s, buf, vals, limit, enc):
    """Non-decreasing codes <= ``limit``; the decoder fails when a decoded code would exceed it."""
    probs_n = np.full(16 * 64, _PONE // 2, np.int64)
    probs_m = np.full(64 * 4, _PONE // 2, np.int64)
    prev = 0
    prev_nb = 0
    end = buf.shape[0]
    for i in range(vals.shape[0]):
        d = vals[i] - prev if enc else 0
        s, nb = _value(s, buf, probs_n, (prev_nb >> 2) * 64, 6, _bitlen(d), enc)
        m = 0
        if nb > 0:
            # the bits below the leading one: up to two in a tree per bit length, the rest equiprobable
            rest = nb - 1
            t = rest if rest < 2 else 2
            node = 1
            m = 1
            for j in range(rest - 1, rest - 1 - t, -1):
                b = (d >> j) & 1 if enc else 0
                s, b = _bit(s, buf, probs_m, nb * 4 + node, b, enc)
                node = (node << 1) | b
                m = (m << 1) | b
            for j in range(rest - 1 - t, -1, -1):
                b = (d >> j) & 1 if enc else 0
                s, b = _direct(s, buf, b, enc)
                m = (m << 1) | b
        if not enc:
            if m > limit - prev:
                return s, _PAST_END if s[4] > end else _BAD_CODE
            vals[i] = prev + m
            if s[4] > end:
                return s, _PAST_END
        prev = prev + m
        prev_nb = nb
    return s, _OK


@njit(cache=True)
def _flush(s, buf):
    for _ in range(5):
        s = _shift_low(s, buf)
    return s


# ------------------------------------------------------------------------------------------------ the API


def _planes(model: str, arr: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(arr).ravel().astype(np.int64)
    if model == "triple":
        if a.size % 3:
            raise ValueError("a triple stream holds [3, N] values")
        a = a.reshape(3, -1)
    return a


_RUNNERS = {"scalar": _run_scalar, "triple": _run_triple, "rotation": _run_rotation, "morton": _run_morton}


def _run(model: str, s: tuple, buf, vals, bits: int, enc: bool) -> tuple:
    """Run ``model``; returns (final state, status: _OK, _BAD_CODE or _PAST_END)."""
    arg = (1 << (3 * bits)) - 1 if model == "morton" else bits  # morton: the largest code
    return _RUNNERS[model](s, buf, vals, arg, enc)


def _check(model: str, bits: int) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown range-coder model {model!r}")
    hi = {"rotation": 20, "morton": 21}.get(model, 16)  # rotation words: 3 bits + 2 <= 62; morton: bits per axis
    if not 1 <= bits <= hi:
        raise ValueError(f"model {model!r}: bits must be 1..{hi}, got {bits}")


def _decisions(model: str, n: int, bits: int) -> int:
    """Upper bound of coded binary decisions (for the encoder's buffer)."""
    per = {"scalar": bits, "triple": 3 * bits, "rotation": 2 + 3 * bits, "morton": 6 + 3 * bits}[model]
    return n * per


#: Most binary decisions one payload byte can hold, a bound the decoder checks before it allocates: the likeliest
#: outcome of an adaptive decision keeps at most 2017/2048 (+ 2^-13 for rounding) of the range, i.e. costs at least
#: 0.0218 bits; 512 decisions per byte (1/64 bit each) leaves a margin of 1.4x.
MAX_DECISIONS_PER_BYTE = 512


def _min_decisions(model: str, bits: int) -> int:
    """Fewest coded decisions per record (a value; three for ``triple``): the tree and low bits of each value, the
    6-bit length of a Morton gap."""
    return {"scalar": bits, "triple": 3 * bits, "rotation": 2 + 3 * bits, "morton": 6}[model]


def max_values(model: str, bits: int, nbytes: int) -> int:
    """The most records (values; [3] triples for ``triple``) a payload of ``nbytes`` bytes can decode to."""
    return (MAX_DECISIONS_PER_BYTE * (nbytes + 1)) // _min_decisions(model, max(bits, 1))


def encode(model: str, arr: np.ndarray, bits: int) -> bytes:
    """Range-code the values ``arr`` (unsigned integers; [3, N] planes or [3N] for ``triple``) of ``bits`` bits
    (bits per axis for ``morton``, whose values must be non-decreasing) with ``model``."""
    _check(model, bits)
    vals = _planes(model, arr)
    n = vals.shape[-1]
    # an adaptive binary decision costs at most log2(2048 / 31) < 6.1 bits: one byte per decision is ample
    buf = np.zeros(_decisions(model, n, bits) + 16, np.uint8)
    s, _ = _run(model, (0, _M32, 0, 1, 0, 0), buf, vals, bits, True)
    s = _flush(s, buf)
    return buf[: s[4]].tobytes()


def decode(model: str, data: bytes, bits: int, n: int, dtype) -> np.ndarray:
    """Inverse of :func:`encode`: ``n`` values ([3n] for ``triple``) as ``dtype``.

    Raises:
        RangeError: the payload is not exactly what the model consumes (truncated or trailing bytes), or a
            decoded Morton code exceeds ``3 bits`` bits.
    """
    _check(model, bits)
    if len(data) < 5 or data[0] != 0:
        raise RangeError("range-coded payload does not start with its zero byte")
    if n > max_values(model, bits, len(data)):
        raise RangeError(
            f"range-coded payload is truncated or a bomb: {len(data)} bytes cannot hold {n} "
            f"{'triples' if model == 'triple' else 'values'} (at most {max_values(model, bits, len(data))}"
            f" at {MAX_DECISIONS_PER_BYTE} binary decisions per byte)"
        )
    buf = np.frombuffer(data, np.uint8).copy()  # writable: numba compiles one signature for both ways
    vals = np.zeros((3, n) if model == "triple" else n, np.int64)
    code = int.from_bytes(bytes(buf[1:5]), "big")
    s, status = _run(model, (0, _M32, 0, 0, 5, code), buf, vals, bits, False)
    if status == _PAST_END or s[4] > buf.size:
        raise RangeError(f"range-coded payload is truncated ({buf.size} bytes, the model needs more)")
    if status == _BAD_CODE:
        raise RangeError(f"a decoded Morton code exceeds {3 * bits} bits")
    if s[4] < buf.size:
        raise RangeError(f"{buf.size - s[4]} bytes after the range-coded data")
    return vals.ravel().astype(dtype)
