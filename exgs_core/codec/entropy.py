"""The entropy stage of .exgs (docs/FORMAT.md, 4): byte-shuffle / delta filters and one zstd frame per stream
(codec 1), or the adaptive range coder with a per-attribute context model (codec 2, :mod:`.rangecoder`).

>>> import numpy as np
>>> a = np.arange(1000, dtype=np.uint32) * 7
>>> s = encode_stream(a, filters=(FILTER_SHUFFLE, FILTER_DELTA), level=3)
>>> s.filter == FILTER_DELTA, s.raw_length
(True, 4000)
>>> bool((decode_stream(s.stored, s.codec, s.filter, s.elem_size, s.raw_length) == a).all())
True
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

import numpy as np
import zstandard as zstd

from . import rangecoder

__all__ = [
    "CODEC_STORED",
    "CODEC_ZSTD",
    "CODEC_RANGE",
    "FILTER_NONE",
    "FILTER_SHUFFLE",
    "FILTER_DELTA",
    "MAX_WINDOW",
    "ZSTD_MAX_RATIO",
    "max_raw_length",
    "Stream",
    "StreamError",
    "apply_filter",
    "undo_filter",
    "encode_stream",
    "decode_stream",
    "encode_streams",
    "decode_streams",
]

CODEC_STORED = 0
CODEC_ZSTD = 1
CODEC_RANGE = 2
CODECS = (CODEC_STORED, CODEC_ZSTD, CODEC_RANGE)
CODEC_NAMES = {CODEC_STORED: "stored", CODEC_ZSTD: "zstd", CODEC_RANGE: "range coder"}

FILTER_NONE = 0
FILTER_SHUFFLE = 1
FILTER_DELTA = 2
FILTERS = (FILTER_NONE, FILTER_SHUFFLE, FILTER_DELTA)

ELEM_DTYPES: dict[int, np.dtype] = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}

#: Largest zstd window a reader accepts (and the writer uses): 2^27 bytes.
MAX_WINDOW = 1 << 27

#: Most raw bytes one byte of a zstd frame can expand to: a block yields at most 128 KiB (2^17) and takes at least
#: 4 bytes (a 3-byte block header and the repeated byte of an RLE block), so 2^17 / 4 = 32768.
ZSTD_MAX_RATIO = 32768

#: Elements of the prefix sample on which the encoder compares candidate filters.
FILTER_SAMPLE = 65536


class StreamError(Exception):
    """A stream cannot be decoded; the container turns it into a FormatError naming the section."""


@dataclass(frozen=True)
class Stream:
    """One encoded section payload and how to undo it."""

    codec: int
    filter: int
    elem_size: int
    raw_length: int
    stored: bytes


def apply_filter(arr: np.ndarray, filt: int) -> bytes:
    """Filtered bytes of the unsigned integer array ``arr`` (1-D, little-endian element type)."""
    arr = np.ascontiguousarray(arr)
    e = arr.dtype.itemsize
    arr = arr.astype(ELEM_DTYPES[e], copy=False)
    if filt == FILTER_NONE:
        return arr.tobytes()
    if filt == FILTER_DELTA:
        d = arr.copy()
        if d.size > 1:
            np.subtract(arr[1:], arr[:-1], out=d[1:])  # unsigned: wraps modulo 2^(8e)
        arr = d
    elif filt != FILTER_SHUFFLE:
        raise ValueError(f"unknown filter {filt}")
    if e == 1:
        return arr.tobytes()
    return np.ascontiguousarray(arr.view(np.uint8).reshape(-1, e).T).tobytes()


def undo_filter(buf: bytes, filt: int, elem_size: int) -> np.ndarray:
    """Inverse of :func:`apply_filter`: a 1-D array of ``elem_size``-byte unsigned integers."""
    dt = ELEM_DTYPES[elem_size]
    if len(buf) % elem_size:
        raise StreamError(f"{len(buf)} bytes is not a whole number of {elem_size}-byte elements")
    n = len(buf) // elem_size
    if filt == FILTER_NONE or elem_size == 1:
        arr = np.frombuffer(buf, dtype=dt).copy() if filt == FILTER_NONE else np.frombuffer(buf, np.uint8).copy()
        arr = arr.view(dt)
    elif filt in (FILTER_SHUFFLE, FILTER_DELTA):
        planes = np.frombuffer(buf, np.uint8).reshape(elem_size, n)
        arr = np.ascontiguousarray(planes.T).view(dt).reshape(n)
    else:
        raise StreamError(f"unknown filter {filt}")
    if filt == FILTER_DELTA:
        arr = np.cumsum(arr, dtype=dt)  # wraps modulo 2^(8 elem_size)
    return arr


def _compress(data: bytes, level: int) -> bytes:
    params = zstd.ZstdCompressionParameters.from_level(level, source_size=len(data), write_content_size=1)
    if params.window_log > 27:
        params = zstd.ZstdCompressionParameters.from_level(
            level, source_size=len(data), write_content_size=1, window_log=27
        )
    return zstd.ZstdCompressor(compression_params=params).compress(data)


def encode_stream(
    arr: np.ndarray,
    *,
    filters: tuple[int, ...] = (FILTER_SHUFFLE,),
    level: int = 12,
    compress: bool = True,
    model: tuple[str, int] | None = None,
) -> Stream:
    """Filter and compress a 1-D unsigned integer array.

    With several candidate ``filters`` the one whose output of the first :data:`FILTER_SAMPLE` elements
    compresses smallest wins (ties: the earlier candidate), so the choice is deterministic. Empty arrays and
    ``compress=False`` are stored. With ``model`` = (range-coder model, bits) the stream is also range-coded
    (codec 2) and the smaller of the two encodings is kept (ties: zstd).
    """
    arr = np.ascontiguousarray(arr).ravel()
    e = arr.dtype.itemsize
    if e == 1:  # shuffling single bytes is the identity: it is FILTER_NONE there
        filters = tuple(dict.fromkeys(FILTER_NONE if f == FILTER_SHUFFLE else f for f in filters))
    filters = filters or (FILTER_NONE,)
    filt = filters[0]
    if len(filters) > 1 and arr.size > 0 and compress:
        head = arr[:FILTER_SAMPLE]
        sizes = [len(_compress(apply_filter(head, f), level)) for f in filters]
        filt = filters[int(np.argmin(sizes))]
    raw = apply_filter(arr, filt)
    if not compress or len(raw) == 0:
        return Stream(CODEC_STORED, filt, e, len(raw), raw)
    best = Stream(CODEC_ZSTD, filt, e, len(raw), _compress(raw, level))
    if model is not None:
        coded = rangecoder.encode(model[0], arr, model[1])
        if len(coded) < len(best.stored):
            best = Stream(CODEC_RANGE, FILTER_NONE, e, len(raw), coded)
    return best


def max_raw_length(codec: int, stored_length: int, elem_size: int, model: tuple[str, int] | None = None) -> int:
    """The most raw bytes a payload of ``stored_length`` bytes can decode to with ``codec`` (and, for codec 2,
    ``model`` = (range-coder model, bits)); a section table claiming more describes an impossible payload (a
    decompression bomb or a cut file), refused before anything of that size is allocated."""
    if codec == CODEC_STORED:
        return stored_length
    if codec == CODEC_ZSTD:
        return ZSTD_MAX_RATIO * stored_length
    if codec == CODEC_RANGE and model is not None and model[0] in rangecoder.MODELS:
        return rangecoder.max_values(model[0], model[1], stored_length) * rangecoder.MODELS[model[0]] * elem_size
    return 0


def decode_stream(
    stored: bytes, codec: int, filt: int, elem_size: int, raw_length: int, model: tuple[str, int] | None = None
) -> np.ndarray:
    """Decompress and unfilter one payload whose ``raw_length`` the caller has already validated. ``model``
    (range-coder model, bits) is the section's model for codec 2.

    Raises:
        StreamError: unknown codec/filter, a zstd frame that does not declare exactly ``raw_length`` bytes,
            a window above :data:`MAX_WINDOW`, corrupt data or trailing bytes after the frame; codec 2 on a
            section without a model, with a filter, or whose payload the model does not consume exactly.
    """
    if elem_size not in ELEM_DTYPES:
        raise StreamError(f"element size {elem_size} is not 1, 2, 4 or 8")
    if raw_length % elem_size:
        raise StreamError(f"raw length {raw_length} is not a multiple of the element size {elem_size}")
    if codec == CODEC_RANGE:
        if model is None:
            raise StreamError("codec 2 (range coder) is not defined for this section")
        if filt != FILTER_NONE:
            raise StreamError(f"codec 2 (range coder) takes no filter, got filter {filt}")
        count = raw_length // elem_size
        if count % rangecoder.MODELS[model[0]]:
            raise StreamError(f"raw length {raw_length} does not hold whole {model[0]} records")
        try:
            return rangecoder.decode(
                model[0], stored, model[1], count // rangecoder.MODELS[model[0]], ELEM_DTYPES[elem_size]
            )
        except rangecoder.RangeError as e:
            raise StreamError(str(e)) from None
    if codec == CODEC_STORED:
        if len(stored) != raw_length:
            raise StreamError(f"stored payload of {len(stored)} bytes, expected {raw_length}")
        raw = stored
    elif codec == CODEC_ZSTD:
        try:
            fp = zstd.get_frame_parameters(stored)
        except zstd.ZstdError as e:
            raise StreamError(f"not a zstd frame ({e})") from None
        if fp.content_size != raw_length:
            declared = "no content size" if fp.content_size == zstd.CONTENTSIZE_UNKNOWN else fp.content_size
            raise StreamError(f"zstd frame declares {declared} bytes, expected {raw_length}")
        if fp.window_size > MAX_WINDOW:
            raise StreamError(f"zstd window of {fp.window_size} bytes exceeds the limit of {MAX_WINDOW}")
        if raw_length > ZSTD_MAX_RATIO * len(stored):
            raise StreamError(f"{len(stored)} zstd bytes cannot hold {raw_length} bytes (at most {ZSTD_MAX_RATIO}:1)")
        if raw_length == 0:
            raw = b""
        else:
            try:
                dobj = zstd.ZstdDecompressor(max_window_size=MAX_WINDOW).decompressobj(write_size=raw_length)
                raw = dobj.decompress(stored)
                if not dobj.eof:
                    raise StreamError("zstd frame is truncated")
                if dobj.unused_data:
                    raise StreamError(f"{len(dobj.unused_data)} bytes after the zstd frame")
            except zstd.ZstdError as e:
                raise StreamError(f"zstd data is corrupt ({e})") from None
        if len(raw) != raw_length:
            raise StreamError(f"zstd frame decoded to {len(raw)} bytes, expected {raw_length}")
    else:
        raise StreamError(f"unknown codec {codec}")
    if filt not in FILTERS:
        raise StreamError(f"unknown filter {filt}")
    return undo_filter(raw, filt, elem_size)


def encode_streams(
    items: list[tuple[bytes, np.ndarray, tuple[int, ...]]],
    *,
    level: int,
    threads: int,
    models: dict[bytes, tuple[str, int]],
) -> list[tuple[bytes, Stream]]:
    """:func:`encode_stream` of every (tag, array, candidate filters), with ``models[tag]`` as its range-coder
    model when present; on ``threads`` threads when > 1 (zstd and the range coder release the GIL). Returns
    (tag, Stream) in the order of ``items``; the bytes do not depend on ``threads``."""

    def work(item):
        tag, arr, filters = item
        return tag, encode_stream(arr, filters=filters, level=level, model=models.get(tag))

    if threads > 1 and len(items) > 1:
        with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as ex:
            # largest streams first so the pool stays busy; results are put back in input order
            order = sorted(range(len(items)), key=lambda i: -items[i][1].nbytes)
            futs = {i: ex.submit(work, items[i]) for i in order}
            return [futs[i].result() for i in range(len(items))]
    return [work(it) for it in items]


def decode_streams(jobs: list[tuple], *, threads: int = 1) -> list[np.ndarray | StreamError]:
    """:func:`decode_stream` of every job = (payload buffer, codec, filter, elem_size, raw_length, model),
    largest first on ``threads`` threads when > 1. Returns, in job order, each decoded array or the
    :class:`StreamError` it raised, so the caller reports the first failure in its own order."""

    def work(job):
        payload, *rest = job
        try:
            return decode_stream(bytes(payload), *rest)
        except StreamError as e:
            return e

    if threads > 1 and len(jobs) > 1:
        largest_first = sorted(range(len(jobs)), key=lambda i: -jobs[i][4])
        with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as ex:
            done = dict(zip(largest_first, ex.map(work, (jobs[i] for i in largest_first)), strict=False))
        return [done[i] for i in range(len(jobs))]
    return [work(j) for j in jobs]
