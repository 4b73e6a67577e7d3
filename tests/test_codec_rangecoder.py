"""Codec 2: the adaptive range coder and its per-attribute models (docs/FORMAT.md 4.1), and .exgs files that use it
(format version 2): exact round trips, smaller files than zstd on real attributes, the same decoded scene as
format version 1, and clear errors for payloads the model does not consume exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exgs_core as ex
from exgs_core import exgs_format as F
from exgs_core.codec import entropy as E
from exgs_core.codec import rangecoder as R
from exgs_core.errors import FormatError

DATA = Path(__file__).parent / "data"
FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def _values(rng, model, n, bits):
    if model == "triple":
        return rng.integers(0, 1 << bits, size=3 * n)
    if model == "rotation":
        return (rng.integers(0, 4, size=n) << (3 * bits)) | rng.integers(0, 1 << (3 * bits), size=n)
    if model == "morton":
        return np.sort(rng.integers(0, 1 << (3 * bits), size=n, dtype=np.int64))
    return rng.integers(0, 1 << bits, size=n)


@pytest.mark.parametrize(
    "model,bits",
    [
        ("scalar", 1),
        ("scalar", 7),
        ("scalar", 16),
        ("triple", 6),
        ("triple", 12),
        ("rotation", 7),
        ("rotation", 10),
        ("rotation", 20),
        ("morton", 1),
        ("morton", 16),
        ("morton", 21),
    ],
)
@pytest.mark.parametrize("n", [0, 1, 5000])
def test_round_trip_uniform(rng, model, bits, n):
    v = _values(rng, model, n, bits)
    data = R.encode(model, v, bits)
    count = n if model != "triple" else n
    out = R.decode(model, data, bits, count, np.uint64)
    assert (out.astype(np.int64) == v).all()
    assert R.encode(model, v, bits) == data  # deterministic


@pytest.mark.parametrize("model", ["scalar", "triple", "rotation", "morton"])
def test_extreme_streams(model):
    """Long runs of the most likely symbol drive the probabilities to their limits and propagate carries through
    runs of 0xFF bytes; the all-ones values do the opposite."""
    bits = 8
    n = 20000
    for fill in (0, (1 << bits) - 1):
        if model == "morton":
            v = np.full(n, fill, np.int64) if fill == 0 else np.arange(n, dtype=np.int64) * 255
        elif model == "rotation":
            v = np.full(n, (3 << (3 * bits)) | ((1 << (3 * bits)) - 1) if fill else 0, np.int64)
        else:
            v = np.full(n * R.MODELS[model], fill, np.int64)
        data = R.encode(model, v, bits)
        assert (R.decode(model, data, bits, n, np.uint64).astype(np.int64) == v).all()
        if fill == 0:
            # a constant stream costs almost nothing: the most likely bit costs about 0.022 bits at best
            assert len(data) < R._decisions(model, n, bits) * 0.03 / 8 + 16, len(data)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["scalar", "triple", "rotation"]), st.integers(1, 12), st.lists(st.integers(0, 2**40), max_size=300)
)
def test_round_trip_property(model, bits, raw):
    n = len(raw) // R.MODELS[model]
    v = np.array(raw[: n * R.MODELS[model]], np.int64) & ((1 << (bits if model != "rotation" else 3 * bits + 2)) - 1)
    data = R.encode(model, v, bits)
    assert (R.decode(model, data, bits, n, np.uint64).astype(np.int64) == v).all()


def test_corrupt_payloads_raise_range_error(rng):
    v = rng.integers(0, 64, size=3 * 2000)
    data = R.encode("triple", v, 6)
    with pytest.raises(R.RangeError, match="truncated"):
        R.decode("triple", data[: len(data) // 2], 6, 2000, np.uint8)
    with pytest.raises(R.RangeError, match="after the range-coded data"):
        R.decode("triple", data + b"\x01\x02", 6, 2000, np.uint8)
    with pytest.raises(R.RangeError, match="zero byte"):
        R.decode("triple", b"\x01" + data[1:], 6, 2000, np.uint8)
    with pytest.raises(R.RangeError, match="zero byte"):
        R.decode("triple", b"", 6, 2000, np.uint8)
    # Morton codes decoded past 3 x bits bits are refused
    big = R.encode("morton", np.array([0, (1 << 48) - 1], np.int64), 16)
    with pytest.raises(R.RangeError, match="exceeds"):
        R.decode("morton", big, 15, 2, np.uint64)
    with pytest.raises(ValueError, match="bits"):
        R.encode("scalar", v, 17)
    with pytest.raises(ValueError, match="unknown"):
        R.encode("nope", v, 6)


# ----------------------------------------------------------------------------------------------- in .exgs files


@pytest.fixture(scope="module")
def biker():
    """4,096 real Gaussians (MIT, © PlayCanvas; tests/data/SOURCES.md)."""
    return ex.load(DATA / "playcanvas_biker_head4096.v4.spz")


def _sections(data):
    return {s["name"]: s for s in F.describe(data)["container"]["sections"]}


@pytest.mark.parametrize(
    "opts",
    [F.CodecOptions(), F.CodecOptions(rotation_bits=7, scale_bits=6, color_bits=6, opacity_bits=7)],
    ids=["default", "coarse"],
)
def test_v2_smaller_and_decodes_like_v1(biker, opts):
    import dataclasses

    v2 = F.encode(biker, options=opts)
    v1 = F.encode(biker, options=dataclasses.replace(opts, range_coder=False))
    h1, h2 = F.describe(v1), F.describe(v2)
    assert h1["version"] == 1 and h2["version"] == 2
    assert all(s["codec"] != E.CODEC_RANGE for s in h1["container"]["sections"])
    coded = {n for n, s in _sections(v2).items() if s["codec"] == E.CODEC_RANGE}
    assert {"sh_dc", "rotations"} <= coded, coded
    # real attributes: the range coder beats zstd clearly on the DC colour, and the file shrinks
    assert _sections(v2)["sh_dc"]["stored_bytes"] < 0.8 * _sections(v1)["sh_dc"]["stored_bytes"]
    assert len(v2) < 0.93 * len(v1), (len(v2), len(v1))
    d1, d2 = F.decode(v1), F.decode(v2)
    for f in FIELDS:
        assert getattr(d1, f).tobytes() == getattr(d2, f).tobytes(), f


def test_v1_only_writer_and_v2_reader_features(biker):
    assert F.READER_VERSION >= 2 and F.FEATURE_MIN_VERSION["range_coder"] == 2
    data = F.encode(biker.subset(np.arange(300)), options=F.CodecOptions(range_coder=False))
    assert F.describe(data)["version"] == 1


def test_codec2_errors_name_the_section(biker):
    import test_exgs_format as T

    data = F.encode(biker.subset(np.arange(1500)))
    fixed, hjson, entries = T.split(data)
    col = T.entry(entries, b"COLR")
    assert col["codec"] == E.CODEC_RANGE
    # a range-coded section in a version-1 file
    first = next(e for e in entries if e["codec"] == E.CODEC_RANGE)
    T.expect_error(
        T.pack(dict(fixed, version=1), hjson.replace(b'"version":2', b'"version":1'), entries),
        f"section:{F.SECTION_NAMES[first['tag']]}",
        "needs format version 2",
    )
    # codec 2 with a filter
    bad = [dict(e, filter=2) if e is col else e for e in entries]
    T.expect_error(T.pack(fixed, hjson, bad), "section:sh_dc", "takes no filter")
    # codec 2 on a section without a model (the SH indices of an SH scene are zstd only)
    sh = F.encode(ex.load(DATA / "supersplat_label_sh3_1000.ply").sanitize()[0])
    f2, h2, e2 = T.split(sh)
    ix = T.entry(e2, b"SHIX")
    T.expect_error(
        T.pack(
            dict(f2, version=2),
            h2.replace(b'"version":1', b'"version":2'),
            [dict(e, codec=2, filter=0) if e is ix else e for e in e2],
        ),
        "section:sh_indices",
        "not defined for this section",
    )
    # truncated and padded payloads (CRCs fixed up): the model does not consume them exactly
    for payload, match in ((col["payload"][:-4], "truncated"), (col["payload"] + b"\0", "after the range-coded")):
        bad = [dict(e, payload=payload) if e is col else e for e in entries]
        T.expect_error(T.pack(fixed, hjson, bad), "section:sh_dc", match)
    # a flipped bit with a valid CRC decodes to other values or fails, and never crashes
    p = bytearray(col["payload"])
    p[len(p) // 2] ^= 0x10
    try:
        F.decode(T.pack(fixed, hjson, [dict(e, payload=bytes(p)) if e is col else e for e in entries]))
    except FormatError as e:
        assert e.field == "section:sh_dc"


def test_parallel_decode_reports_first_bad_section_in_table_order(biker, monkeypatch):
    """Sections decode on threads; with two bad sections the error names the first in the table."""
    import test_exgs_format as T

    import exgs_core.io.exgs as X

    monkeypatch.setattr(X, "PARALLEL_DECODE_BYTES", 0)
    data = F.encode(biker)
    assert F.decode(data).n == biker.n
    fixed, hjson, entries = T.split(data)
    bad = [dict(e, payload=e["payload"][:-2]) if e["tag"] in (b"ROTN", b"COLR") else e for e in entries]
    T.expect_error(T.pack(fixed, hjson, bad), "section:rotations")
