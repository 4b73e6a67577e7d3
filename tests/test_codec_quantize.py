"""Quantisers of the .exgs codec: each encoder/decoder pair stays within its documented error bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from exgs_core.codec import quantize as Q


@pytest.mark.parametrize("bits", [1, 4, 8, 10, 12, 16])
def test_uniform_half_step(rng, bits):
    x = (rng.normal(size=(5000, 3)) * [1.0, 100.0, 1e-3] + [0.0, -50.0, 7.0]).astype(np.float32)
    lo, step = Q.uniform_params(x, bits)
    codes = Q.uniform_encode(x, lo, step, bits)
    assert codes.shape == (3, 5000) and codes.dtype == Q.uniform_dtype(bits)
    assert int(codes.max()) <= (1 << bits) - 1
    dec = Q.uniform_decode(codes, lo, step)
    err = np.abs(dec.astype(np.float64) - x)
    mag = np.maximum(np.abs(lo), np.abs(lo + step * ((1 << bits) - 1)))
    assert (err <= step / 2 + mag * 2.0**-22).all()


def test_uniform_constant_column_and_empty():
    x = np.array([[3.0, 1.0], [3.0, 2.0]], np.float32)
    lo, step = Q.uniform_params(x, 8)
    assert step[0] == 0 and lo[0] == 3
    assert (Q.uniform_decode(Q.uniform_encode(x, lo, step, 8), lo, step) == x).all()
    lo, step = Q.uniform_params(np.zeros((0, 3), np.float32), 8)
    assert lo.shape == (3,) and Q.uniform_encode(np.zeros((0, 3), np.float32), lo, step, 8).shape == (3, 0)


@pytest.mark.parametrize("bits", [4, 6, 8, 9, 10, 12, 16, 20])
def test_smallest3_angle_bound(rng, bits):
    q = rng.normal(size=(20000, 4))
    # near-ties between the largest components and signs, the hard cases of smallest-three
    q[:500] = 0.5 + rng.normal(scale=1e-4, size=(500, 4))
    q[500:1000] = np.array([0.7071, -0.7071, 0, 0]) + rng.normal(scale=1e-4, size=(500, 4))
    q[1000:1004] = np.eye(4)
    q[1004:1008] = -np.eye(4)
    q = q.astype(np.float32)
    words = Q.smallest3_encode(q, bits)
    assert words.dtype == Q.rotation_word_dtype(bits)
    assert int(words.max()) >> (3 * bits + 2) == 0
    dec = Q.smallest3_decode(words, bits)
    assert np.allclose(np.linalg.norm(dec, axis=1), 1, atol=1e-6)
    ang = Q.rotation_angle(q, dec)
    assert ang.max() <= Q.smallest3_max_angle(bits) + 8 * 2.0**-24


def test_smallest3_documented_numbers():
    assert math.degrees(Q.smallest3_max_angle(10)) == pytest.approx(0.275, abs=5e-4)
    assert Q.rotation_word_dtype(10) == np.uint32 and Q.rotation_word_dtype(11) == np.uint64


def test_rotation_angle_sign_invariant(rng):
    q = rng.normal(size=(100, 4))
    assert np.allclose(Q.rotation_angle(q, -q), 0, atol=1e-6)
    # 90 degrees about z
    a = np.array([[1, 0, 0, 0]], float)
    b = np.array([[math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)]])
    assert Q.rotation_angle(a, b)[0] == pytest.approx(math.pi / 2)


@pytest.mark.parametrize("bits", [4, 8, 12, 16])
def test_opacity_bound(rng, bits):
    logits = np.concatenate([rng.normal(scale=5, size=10000), [-100, 100, 0, -1e-3, 1e-3]]).astype(np.float32)
    codes = Q.opacity_encode(logits, bits)
    assert int(codes.max()) < (1 << bits)
    dec = Q.opacity_decode(codes, bits)
    assert np.isfinite(dec).all()
    p_in = Q._sigmoid64(logits)
    p_out = Q._sigmoid64(dec)
    assert np.abs(p_out - p_in).max() <= 2.0 ** -(bits + 1) + 2.0**-23


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 40), st.just(3)), elements=st.floats(-1e6, 1e6, width=32)),
    st.integers(1, 16),
)
def test_uniform_property(x, bits):
    lo, step = Q.uniform_params(x, bits)
    dec = Q.uniform_decode(Q.uniform_encode(x, lo, step, bits), lo, step)
    mag = np.maximum(np.abs(lo), np.abs(lo + step * ((1 << bits) - 1))).astype(np.float64)
    assert (np.abs(dec.astype(np.float64) - x) <= step.astype(np.float64) / 2 + mag * 2.0**-22 + 1e-30).all()


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.just(4)), elements=st.floats(-1, 1, width=32)).filter(
        lambda q: (np.linalg.norm(q, axis=1) > 1e-3).all()
    ),
    st.integers(4, 20),
)
def test_smallest3_property(q, bits):
    dec = Q.smallest3_decode(Q.smallest3_encode(q, bits), bits)
    assert Q.rotation_angle(q, dec).max() <= Q.smallest3_max_angle(bits) + 8 * 2.0**-24
