"""exgs_core.knn against a brute-force numpy reference (no scipy): exact neighbours, order, ties, edge cases."""

import numpy as np
import pytest

from exgs_core.knn import knn, nearest, query


def brute(ref, queries, k, self_query=False):
    """(dist [Q, k], idx [Q, k]) by full sort on (squared distance, index); the knn conventions: a point first in
    its own row, missing = (inf, len(ref)), NaN/Inf rows never neighbours and without neighbours."""
    ref = np.asarray(ref, np.float64)
    queries = np.asarray(queries, np.float64)
    n = len(ref)
    ok_ref = np.isfinite(ref).all(axis=1)
    dist = np.full((len(queries), k), np.inf)
    idx = np.full((len(queries), k), n, np.int64)
    for r, x in enumerate(queries):
        if not np.isfinite(x).all():
            continue
        dx = x - ref  # summed in the order the kernel (and cKDTree) sums
        with np.errstate(over="ignore", invalid="ignore"):
            d2 = dx[:, 0] * dx[:, 0] + dx[:, 1] * dx[:, 1] + dx[:, 2] * dx[:, 2]
        d2 = np.where(ok_ref, d2, np.inf)
        rank = np.arange(n) == r if self_query else np.zeros(n, bool)
        order = np.lexsort((np.arange(n), d2, ~rank))  # itself first, then by distance, then by index
        order = order[np.isfinite(d2[order])][:k]
        dist[r, : len(order)] = np.sqrt(d2[order])
        idx[r, : len(order)] = order
    return dist, idx


def check_knn(points, k):
    d, i = knn(points, k)
    bd, bi = brute(points, points, k, self_query=True)
    assert d.dtype == np.float64 and i.dtype == np.int64 and d.shape == i.shape == (len(points), k)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_array_equal(d, bd)


def check_query(ref, queries, k):
    d, i = query(ref, queries, k)
    bd, bi = brute(ref, queries, k)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_array_equal(d, bd)


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 33, 100, 1000, 3001])
def test_knn_random_matches_brute_force(n):
    pts = np.random.default_rng(n).normal(size=(n, 3)) * [1.0, 3.0, 0.2]
    check_knn(pts, 9)
    check_knn(pts, 1)


def test_clustered_and_float32_points():
    rng = np.random.default_rng(1)
    pts = np.concatenate(
        [
            rng.normal(size=(1500, 3)) * 1e-3,
            rng.normal(size=(300, 3)) * 1e3 + 50.0,
            rng.uniform(-1e4, 1e4, size=(200, 3)),
        ]
    ).astype(np.float32)
    rng.shuffle(pts)
    check_knn(pts, 9)
    check_query(pts[:700], pts[700:], 4)


def test_duplicates_itself_first_then_by_index():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(40, 3))
    pts = base[rng.integers(0, 40, 600)]  # every point ~15 times
    check_knn(pts, 9)
    same = np.zeros((50, 3))
    d, i = knn(same, 5)
    assert (i[:, 0] == np.arange(50)).all() and (d == 0).all()
    assert i[7].tolist() == [7, 0, 1, 2, 3] and i[0].tolist() == [0, 1, 2, 3, 4]
    d, i = nearest(same, np.zeros((3, 3)))
    assert (i == 0).all() and (d == 0).all()


def test_lattice_ties_break_by_index():
    g = np.stack(np.meshgrid(*[np.arange(6.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pts = g[np.random.default_rng(3).permutation(len(g))] * 0.1
    check_knn(pts, 9)
    check_knn(pts, 27)
    check_query(pts, pts[::7] + 0.05, 8)


def test_k_above_n_and_empty():
    pts = np.random.default_rng(4).random((5, 3))
    d, i = knn(pts, 8)
    assert np.isfinite(d[:, :5]).all() and (d[:, 5:] == np.inf).all() and (i[:, 5:] == 5).all()
    check_knn(pts, 8)
    d, i = knn(np.zeros((0, 3)), 3)
    assert d.shape == i.shape == (0, 3)
    d, i = nearest(np.zeros((0, 3)), pts)
    assert (d == np.inf).all() and (i == 0).all()
    d, i = nearest(pts, np.zeros((0, 3)))
    assert d.shape == i.shape == (0,)
    with pytest.raises(ValueError):
        knn(pts, 0)
    with pytest.raises(ValueError):
        knn(pts[:, :2], 2)


def test_non_finite_points_are_nobodys_neighbours():
    rng = np.random.default_rng(5)
    pts = rng.random((300, 3))
    bad = [3, 50, 51, 299]
    pts[3, 0], pts[50, 1], pts[51, 2], pts[299] = np.nan, np.inf, -np.inf, np.nan
    d, i = knn(pts, 9)
    assert (d[bad] == np.inf).all() and (i[bad] == 300).all()
    assert not np.isin(i, bad).any()
    check_knn(pts, 9)
    check_query(pts, np.concatenate([pts[:20], [[np.nan, 0, 0], [0, np.inf, 0]]]), 3)
    d, i = nearest(np.full((4, 3), np.nan), pts[:2])
    assert (d == np.inf).all() and (i == 4).all()


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e6, 1e15])
def test_extreme_scales(scale):
    rng = np.random.default_rng(6)
    pts = rng.normal(size=(500, 3)) * scale + 3.0 * scale
    check_knn(pts, 9)
    check_query(pts[:250], pts[250:], 1)


def test_mixed_scales_and_overflow():
    rng = np.random.default_rng(7)
    pts = np.concatenate(
        [rng.normal(size=(400, 3)) * 1e-6, rng.normal(size=(100, 3)) * 1e15, [[1e200, 0, 0], [-1e200, 0, 0]]]
    )
    check_knn(pts, 9)  # the two at 1e200: every squared distance to them overflows, so they count as missing
    d, i = knn(pts, 3)
    assert (i[-2:, 1:] == len(pts)).all()


def test_nearest_matches_query_k1():
    rng = np.random.default_rng(8)
    ref, q = rng.random((800, 3)), rng.random((300, 3))
    d, i = nearest(ref, q)
    bd, bi = brute(ref, q, 1)
    np.testing.assert_array_equal(i, bi[:, 0])
    np.testing.assert_array_equal(d, bd[:, 0])


def test_merges_skip_non_finite_centres():
    """The search's two users in exgs_core.prune: a Gaussian with a NaN centre is nobody's merge partner (cKDTree
    raised)."""
    from exgs_core import GaussianScene
    from exgs_core.prune import PairwiseRule, merge_into_survivors, pairwise_merge

    rng = np.random.default_rng(9)
    n = 400
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scene = GaussianScene(
        rng.normal(size=(n, 3)).astype(np.float32),
        q.astype(np.float32),
        np.full((n, 3), -3.0, np.float32),
        np.zeros(n, np.float32),
        rng.random((n, 1, 3)).astype(np.float32),
    )
    scene.means[[5, 77]] = np.nan
    keep = np.arange(n) % 4 == 0
    keep[[5, 77]] = False
    out, stats = merge_into_survivors(scene, keep)
    assert stats["merged"] == (~keep).sum() - 2 and np.isfinite(out.means).all()
    out, stats = pairwise_merge(scene, rng.random(n), 100, PairwiseRule(drop_score_fraction=0.0))
    assert out.n == 100 and np.isfinite(out.means).all(axis=1).sum() == 98  # the two stay unmerged
