import numpy as np
import pytest

from exgs_core import GaussianScene, SceneError
from exgs_core.conventions import sh_coeff_count


def make(n=10, deg=0, rng=None):
    rng = rng or np.random.default_rng(0)
    k = sh_coeff_count(deg)
    return GaussianScene(
        rng.normal(size=(n, 3)),
        rng.normal(size=(n, 4)),
        rng.normal(size=(n, 3)) - 3,
        rng.normal(size=n),
        rng.normal(size=(n, k, 3)),
    )


def test_shapes_and_degree():
    for d in range(4):
        s = make(5, d)
        assert s.sh.shape == (5, (d + 1) ** 2, 3) and s.sh_degree == d
        assert s.means.dtype == np.float32


def test_bad_shapes_raise_scene_error():
    with pytest.raises(SceneError, match="means"):
        GaussianScene(np.zeros((3, 2)), np.zeros((3, 4)), np.zeros((3, 3)), np.zeros(3), np.zeros((3, 1, 3)))
    with pytest.raises(SceneError, match="sh"):
        GaussianScene(np.zeros((3, 3)), np.zeros((3, 4)), np.zeros((3, 3)), np.zeros(3), np.zeros((3, 5, 3)))
    with pytest.raises(SceneError, match="numeric"):
        GaussianScene(np.zeros((3, 3)), np.zeros((3, 4)), np.zeros((3, 3)), np.array(["a"] * 3), np.zeros((3, 1, 3)))


def test_validate_counts_problems_and_changes_nothing():
    s = make(10)
    s.means[2, 0] = np.nan
    s.log_scales[3, 1] = np.inf
    s.quats[4] = 0
    s.quats[5] = 0
    before = s.copy()
    rep = s.validate()
    assert rep.nonfinite["means"] == 1 and rep.nonfinite["log_scales"] == 1
    assert rep.zero_quats == 2 and not rep.ok
    assert len(rep.problems()) == 3
    assert s.equal(before)


def test_validate_length_mismatch():
    s = make(10)
    s.opacity_logits = s.opacity_logits[:8]
    rep = s.validate()
    assert rep.length_mismatch["opacity_logits"] == 8 and rep.length_mismatch["means"] == 10
    fixed, rep2 = s.sanitize()
    assert fixed.n == 8 and rep2.dropped == 2
    assert any("truncated" in a for a in rep2.actions)


def test_sanitize_drops_and_repairs_with_report():
    s = make(10)
    s.means[2, 0] = np.nan
    s.quats[4] = 0
    fixed, rep = s.sanitize()
    assert fixed.n == 9 and rep.dropped == 1
    assert fixed.validate().ok
    np.testing.assert_allclose(np.linalg.norm(fixed.quats, axis=1), 1, atol=1e-6)
    assert any("NaN/Inf" in a for a in rep.actions) and any("identity" in a for a in rep.actions)
    assert any(n.startswith("sanitize:") for n in fixed.meta["notes"])
    # the original is untouched (never repair silently or in place)
    assert np.isnan(s.means[2, 0]) and (s.quats[4] == 0).all()


def test_sanitize_drop_zero_quats_option():
    s = make(6)
    s.quats[1] = 0
    fixed, rep = s.sanitize(zero_quat="drop")
    assert fixed.n == 5 and rep.dropped == 1


def test_subset_sh_cut_and_ply_size():
    s = make(10, 3)
    s.extras["foo"] = np.arange(10, dtype=np.float32)
    sub = s.subset(np.arange(10) % 2 == 0)
    assert sub.n == 5 and np.array_equal(sub.extras["foo"], [0, 2, 4, 6, 8])
    cut = s.with_sh_degree(1)
    assert cut.sh.shape == (10, 4, 3) and np.array_equal(cut.sh, s.sh[:, :4])
    assert s.ply_size_bytes(3) == 10 * 248
    assert s.with_sh_degree(0).ply_size_bytes() == 10 * 4 * 17


def test_empty_scene_validates_and_sanitizes():
    s = GaussianScene.empty(0, sh_degree=2)
    assert s.validate().ok
    fixed, rep = s.sanitize()
    assert fixed.n == 0 and rep.dropped == 0


def test_atomic_write_permissions_and_no_partial_file(tmp_path):
    import os
    import stat

    from exgs_core.io.atomic import atomic_write

    p = tmp_path / "out.bin"
    with atomic_write(p) as f:
        f.write(b"abc")
    mode = stat.S_IMODE(os.stat(p).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    with pytest.raises(RuntimeError):
        with atomic_write(p) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert p.read_bytes() == b"abc" and list(tmp_path.iterdir()) == [p]
