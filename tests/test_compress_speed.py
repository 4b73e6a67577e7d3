"""The compress pipeline's shortcuts (issue #16): work shared between the merge rules, merges side by side, check
views rendered only where a decision needs them, scoring renders without view-dependent colour. Each must leave the
output as it was, or judge on the views it says it judged on."""

import numpy as np
import pytest
from exgs_testpaths import DATA

import exgs_core.compress as C
from exgs_core import load
from exgs_core.compress import AUTO_RULES, CompressOptions, compress
from exgs_core.prune import accumulate, significance
from exgs_core.prune import merge as M
from exgs_core.render import render
from exgs_core.views import auto_views

DONUT = DATA / "donut_sh0_2000.ply"
SH3 = DATA / "supersplat_label_sh3_1000.ply"
PLANT = DATA / "plant_2000.splat"
# small views; no scene head (its fit is another step's cost, tested with it)
FAST = dict(views=6, view_size=64, **({"head": "off"} if "head" in CompressOptions.__dataclass_fields__ else {}))


def _same(a, b) -> bool:
    return all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in ("means", "quats", "log_scales", "opacity_logits", "sh")
    )


def test_rules_sharing_their_first_steps_merge_exactly_as_alone():
    scene = load(PLANT)
    score = significance(scene, accumulate(scene, auto_views(scene, 4, 64, 64, split="train")))
    shared = M.MergeShared(scene)
    for rule in AUTO_RULES.values():
        alone, st_alone = M.pairwise_merge(scene, score, 300, rule)
        together, st_together = M.pairwise_merge(scene, score, 300, rule, shared=shared)
        assert _same(alone, together) and st_alone == st_together
    # the Ward rule and the KL rule after the same drop start from the same Gaussians: one neighbour search for both
    assert len(shared._first) == 1 and len(next(iter(shared._first.values()))) == 2


def test_scoring_renders_at_sh_degree_0_give_the_same_weights_and_counts():
    scene = load(SH3)
    cams = auto_views(scene, 3, 64, 64, split="train")
    acc = accumulate(scene, cams, counts=True)
    w = sum(render(scene, c, return_weights=True, return_counts=True).weights.astype(np.float64) for c in cams)
    n = sum(render(scene, c, return_weights=True, return_counts=True).counts.astype(np.float64) for c in cams)
    np.testing.assert_array_equal(acc.weight, w)
    np.testing.assert_array_equal(acc.count, n)


class _Stub:
    """Check views whose PSNRs are given: psnr[c][v] for candidate scene c (an int) on view v; counts renders."""

    def __init__(self, psnr):
        self.psnr, self.cameras, self.rendered = np.asarray(psnr, float), [None] * len(psnr[0]), []

    def view_psnrs(self, candidate, views):
        self.rendered += [(candidate, v) for v in views]
        return self.psnr[candidate, list(views)]


def test_race_judges_a_clear_loser_on_half_the_views_and_close_ones_on_all():
    # candidate 1 leads candidate 0 by 0.1 dB (close), candidate 2 trails by 2 dB (clear)
    check = _Stub([[30.0] * 8, [30.1] * 8, [28.0] * 8])
    cands = [C._Judged(check, i) for i in range(3)]
    win, means, views = C._race(cands)
    assert win == 1 and views == [8, 8, 4]
    assert means == pytest.approx([30.0, 30.1, 28.0])
    assert sorted(v for c, v in check.rendered if c == 2) == [0, 2, 4, 6]  # every other view, never twice
    assert sorted(v for c, v in check.rendered if c == 1) == list(range(8))
    # a clear winner is decided on half the views: nobody is rendered on the rest
    check = _Stub([[25.0] * 8, [30.0] * 8])
    win, _, views = C._race([C._Judged(check, i) for i in range(2)])
    assert win == 1 and views == [4, 4] and {v for _, v in check.rendered} == {0, 2, 4, 6}
    # the half-view leader can lose on all views: the means over all of them decide; ties keep the first
    check = _Stub([[30.0, 20, 30, 20, 30, 20, 30, 20], [30.2, 30, 30.2, 30, 30.2, 30, 30.2, 30], [30.0] * 8])
    win, _, _ = C._race([C._Judged(check, i) for i in range(3)])
    assert win == 1
    check = _Stub([[30.0] * 8, [30.0] * 8])
    assert C._race([C._Judged(check, i) for i in range(2)])[0] == 0


def test_check_views_render_each_full_scene_view_once_and_only_when_needed(monkeypatch):
    import exgs_core.render as R

    scene = load(DONUT)
    opts = CompressOptions(**FAST)
    real = R.render
    full = []

    def counting(s, cam, **kw):
        if s.n == scene.n:
            full.append(cam.name)
        return real(s, cam, **kw)

    monkeypatch.setattr(R, "render", counting)
    views = C.CheckViews(scene, opts, None)
    cand = scene.subset(np.arange(0, scene.n, 3))
    a = views.view_psnrs(cand, [0, 2])
    b = views.view_psnrs(cand, [2, 4])
    assert full == [views.cameras[i].name for i in (0, 2, 4)] and a[1] == b[0]
    from exgs_core.metrics import psnr

    ref = real(scene, views.cameras[4]).rgb
    assert b[1] == pytest.approx(psnr(real(cand, views.cameras[4]).rgb, ref), abs=1e-9)
    assert views.psnr(cand) == pytest.approx(np.mean(views.view_psnrs(cand, range(len(views.cameras)))))
    assert len(full) == len(views.cameras) == len(set(full))


def test_codec_steps_are_judged_against_the_kept_step_on_the_same_views():
    scene = load(DONUT)
    _, rep = compress(scene, CompressOptions(ratio=0.25, **FAST))
    tried = rep.sampling["codec"]["tried"]
    half = (C.CHECK_VIEWS + 1) // 2
    assert tried[0]["codec"] == "default" and tried[0]["views"] in (half, C.CHECK_VIEWS)
    for kept, step in zip(tried, tried[1:], strict=False):
        assert step["views"] in (half, C.CHECK_VIEWS)
        assert step["loss_db"] == pytest.approx(kept["view_psnr"] - step["view_psnr"], abs=2e-3) or (
            step["views"] != kept["views"]  # escalated to every view: the kept step's mean there differs
        )
        # a step decided on half the views was clear by the margin there
        if step["views"] == half:
            assert abs(step["loss_db"] - step["saving_worth_db"]) > C.JUDGE_MARGIN_DB - 2e-3


def test_merges_side_by_side_give_the_bytes_of_merges_in_turn(monkeypatch):
    scene = load(PLANT)
    opts = CompressOptions(ratio=0.2, **FAST)
    monkeypatch.setattr(C, "PARALLEL_MERGES", False)
    alone, rep_a = compress(scene, opts)
    monkeypatch.setattr(C, "PARALLEL_MERGES", True)
    together, rep_b = compress(scene, opts)
    assert alone == together
    assert {k: v for k, v in rep_a.sampling.items() if k != "head"} == {
        k: v
        for k, v in rep_b.sampling.items()
        if k != "head"  # the scene head's entry carries its seconds
    }


def test_large_merges_run_in_spatial_chunks_each_to_its_share(rng):
    scene = load(PLANT)
    score = rng.random(scene.n)
    stages = []
    out, st = M.pairwise_merge(
        scene, score, 300, AUTO_RULES["pairwise"], chunk=400, progress=lambda f, s: stages.append((f, s))
    )
    assert st["chunks"] >= 3 and out.n == 300 and np.isfinite(out.means).all()
    assert [s for _, s in stages] == [f"merging chunk {i + 1}/{st['chunks']}" for i in range(st["chunks"])]
    # every chunk is a compact box of at most `chunk` Gaussians, together a partition
    parts = M._spatial_chunks(scene.means, 400)
    assert sorted(np.concatenate(parts).tolist()) == list(range(scene.n)) and max(map(len, parts)) <= 400
    assert M._shares(300, [len(p) for p in parts]) == M._shares(300, [len(p) for p in parts])
    assert sum(M._shares(300, [len(p) for p in parts])) == 300
    assert M._shares(10, [5, 5, 10]) == [3, 2, 5]  # largest remainders, ties to the earlier part
    # a scene within the chunk size merges in one piece, as before
    one, st1 = M.pairwise_merge(scene, score, 300, AUTO_RULES["pairwise"], chunk=scene.n)
    alone, _ = M.pairwise_merge(scene, score, 300, AUTO_RULES["pairwise"])
    assert st1["chunks"] == 1 and _same(one, alone)


def test_compress_reports_the_merges_and_can_be_cancelled_during_them(monkeypatch):
    from exgs_core.prune import Cancelled

    scene = load(PLANT)
    stages = []
    compress(scene, CompressOptions(ratio=0.2, **FAST), progress=lambda f, s: stages.append((f, s)))
    names = [s for _, s in stages]
    assert any(s.startswith("merg") for s in names) and "judging the merges" in names
    upto = names.index("pruned")
    fr = [f for f, _ in stages[: upto + 1]]
    assert fr == sorted(fr)  # scoring, the merges and their judging, in order, before "pruned"
    merging = [f for f, s in stages if s.startswith("merg") or s == "judging the merges"]
    assert min(merging) >= C._SCORED - 1e-9 and max(merging) <= C._PRUNED + 1e-9
    # sequential merges (large scenes) hear of each chunk; a cancel there stops the call
    monkeypatch.setattr(C, "PARALLEL_MERGES", False)
    monkeypatch.setattr(M, "MERGE_CHUNK", 500)
    seen = []

    def cancel():
        return any("chunk 2/" in s for s in seen)

    with pytest.raises(Cancelled):
        compress(scene, CompressOptions(ratio=0.2, **FAST), progress=lambda f, s: seen.append(s), cancel=cancel)
    assert any("chunk 2/" in s for s in seen)
