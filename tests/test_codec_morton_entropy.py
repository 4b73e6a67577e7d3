"""Morton codes, the shuffle/delta filters, zstd stream limits and the SH palette."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard as zstd
from hypothesis import given, settings
from hypothesis import strategies as st

from exgs_core.codec import entropy as E
from exgs_core.codec import morton
from exgs_core.codec.palette import default_palette_size, kmeans_palette


def test_morton_round_trip_and_order(rng):
    q = rng.integers(0, 1 << 21, size=(10000, 3)).astype(np.uint32)
    c = morton.encode(q)
    assert (morton.decode(c) == q).all()
    assert int(c.max()) < 1 << 63
    # interleaving: x in bit 0, y in bit 1, z in bit 2
    assert morton.encode(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 5, 7]], np.uint32)).tolist() == [1, 2, 4, 431]
    o = morton.order(np.array([5, 1, 5, 0], np.uint64))
    assert o.tolist() == [3, 1, 0, 2]  # ties keep input order


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("filt", [E.FILTER_NONE, E.FILTER_SHUFFLE, E.FILTER_DELTA])
def test_filters_round_trip(rng, dtype, filt):
    a = rng.integers(0, np.iinfo(dtype).max, size=1001, dtype=dtype, endpoint=True)
    s = E.encode_stream(a, filters=(filt,), level=3)
    out = E.decode_stream(s.stored, s.codec, s.filter, s.elem_size, s.raw_length)
    assert out.dtype == np.dtype(dtype).newbyteorder("<") and (out == a).all()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=200), st.sampled_from([1, 2, 4, 8]), st.sampled_from(E.FILTERS))
def test_filters_property(values, esize, filt):
    a = (np.array(values, dtype=np.uint64) % np.uint64(2 ** min(63, 8 * esize))).astype(E.ELEM_DTYPES[esize])
    raw = E.apply_filter(a, filt)
    assert len(raw) == a.nbytes
    assert (E.undo_filter(raw, filt, esize) == a).all()


def test_filter_choice_deterministic_and_empty():
    a = np.arange(100000, dtype=np.uint64) * 3
    s1 = E.encode_stream(a, filters=(E.FILTER_SHUFFLE, E.FILTER_DELTA))
    s2 = E.encode_stream(a, filters=(E.FILTER_SHUFFLE, E.FILTER_DELTA))
    assert s1 == s2 and s1.filter == E.FILTER_DELTA
    e = E.encode_stream(np.zeros(0, np.uint16))
    assert e.codec == E.CODEC_STORED and e.stored == b""


def test_decode_stream_rejects():
    a = np.arange(1000, dtype=np.uint16)
    s = E.encode_stream(a, level=3)
    with pytest.raises(E.StreamError, match="declares"):
        E.decode_stream(s.stored, s.codec, s.filter, 2, 1998)
    with pytest.raises(E.StreamError, match="after the zstd frame"):
        E.decode_stream(s.stored + b"x", s.codec, s.filter, 2, 2000)
    with pytest.raises(E.StreamError):
        E.decode_stream(s.stored[:-3], s.codec, s.filter, 2, 2000)
    with pytest.raises(E.StreamError, match="not a zstd frame"):
        E.decode_stream(b"\x00" * 10, E.CODEC_ZSTD, 0, 1, 10)
    with pytest.raises(E.StreamError, match="unknown codec"):
        E.decode_stream(b"", 7, 0, 1, 0)
    with pytest.raises(E.StreamError, match="stored payload"):
        E.decode_stream(b"abc", E.CODEC_STORED, 0, 1, 4)
    # a frame that declares no content size is refused (we cannot bound it before decoding)
    nosize = zstd.ZstdCompressor(write_content_size=False).compress(b"a" * 100)
    with pytest.raises(E.StreamError, match="no content size"):
        E.decode_stream(nosize, E.CODEC_ZSTD, 0, 1, 100)


def test_palette_basic(rng):
    x = rng.normal(size=(5000, 9)).astype(np.float32)
    pal, lab = kmeans_palette(x, 256, seed=3)
    assert pal.shape == (256, 9) and lab.shape == (5000,) and lab.min() >= 0 and lab.max() < 256
    pal2, lab2 = kmeans_palette(x, 256, seed=3)
    assert (pal == pal2).all() and (lab == lab2).all()
    # better than the best single centroid (the mean) by a wide margin
    err = ((pal[lab] - x) ** 2).sum(1).mean()
    assert err < 0.6 * ((x - x.mean(0)) ** 2).sum(1).mean()
    # few vectors: stored as they are
    pal, lab = kmeans_palette(x[:10], 256)
    assert (pal[lab] == x[:10]).all()
    pal, lab = kmeans_palette(np.zeros((0, 9), np.float32), 16)
    assert pal.shape == (0, 9) and lab.shape == (0,)


def test_palette_recovers_clusters(rng):
    centres = rng.normal(size=(64, 45)).astype(np.float32) * 3
    lab_true = rng.integers(0, 64, 20000)
    x = centres[lab_true] + rng.normal(scale=0.01, size=(20000, 45)).astype(np.float32)
    pal, lab = kmeans_palette(x, 64, iterations=8)
    assert ((pal[lab] - x) ** 2).sum(1).mean() < 0.1


def test_palette_keeps_cut_sh_exactly_zero_and_fast(rng):
    """Most Gaussians of a pruned scene have their higher SH cut to zero: they share an exact zero entry (they
    decode to no view dependence, not to a nearby centroid), and the rest are clustered on their own in well
    under a second (a coarse cell mixing the zero mass with a few others took seconds)."""
    import time

    x = np.zeros((13000, 45), np.float32)
    x[:1300] = rng.normal(size=(1300, 45))
    t = time.perf_counter()
    pal, lab = kmeans_palette(x, 8192)
    assert time.perf_counter() - t < 2.0
    assert (pal[lab[1300:]] == 0).all() and (lab[:1300] > 0).all()
    assert (pal[lab] == x).all()  # 1300 others fit 8191 entries: stored exactly
    pal, lab = kmeans_palette(x, 256)
    assert pal.shape == (256, 45) and (pal[lab[1300:]] == 0).all() and lab.max() < 256


def test_default_palette_size():
    assert default_palette_size(0) == 0
    assert default_palette_size(100) == 100
    assert default_palette_size(5000) == 256
    assert default_palette_size(160_000) == 8192
    assert default_palette_size(10**8) == 16384
