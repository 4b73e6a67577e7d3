"""UGC compression end to end: pruning rules, amplification, SH split, the compress API and its CLI."""

import json

import numpy as np
import pytest
from exgs_testpaths import DATA

from exgs_core import ExgsError, GaussianScene, load
from exgs_core import prune as P
from exgs_core.cli import main
from exgs_core.compress import AUTO_RULES, CompressOptions, compress, decompress, prune
from exgs_core.conventions import logit
from exgs_core.prune import Cancelled, PairwiseRule
from exgs_core.prune import merge as M

DONUT = DATA / "donut_sh0_2000.ply"
SH3 = DATA / "supersplat_label_sh3_1000.ply"
FAST = dict(views=6, view_size=64)


def test_voxel_sample_keeps_exact_budget_and_best_per_voxel(rng):
    means = rng.uniform(0, 10, size=(5000, 3)).astype(np.float32)
    score = rng.uniform(size=5000)
    for ratio in (0.5, 0.1, 0.01):
        r = P.voxel_sample(means, score, ratio)
        assert r.keep.sum() == round(ratio * 5000)
    # within a voxel the kept ones are the best ones by score
    r = P.voxel_sample(means, score, 0.25, voxel_size=2.0)
    for v in np.unique(r.voxel)[:50]:
        m = r.voxel == v
        if r.keep[m].any() and (~r.keep[m]).any():
            assert score[m][r.keep[m]].min() >= score[m][~r.keep[m]].max() or r.kept_by_budget > 0


def test_voxel_sample_keeps_thin_isolated_structure(rng):
    # a dense blob with high scores and a sparse thin line of moderately important Gaussians far away
    blob = rng.normal(size=(5000, 3)).astype(np.float32)
    line = np.stack([np.linspace(20, 40, 60), np.zeros(60), np.zeros(60)], 1).astype(np.float32)
    means = np.concatenate([blob, line])
    score = np.concatenate([rng.uniform(1.0, 2.0, 5000), np.full(60, 0.9)])
    glob_keep = P.top_k(score, 0.05)
    assert glob_keep[5000:].sum() == 0  # global top-k drops the whole line
    vox = P.voxel_sample(means, score, 0.05, voxel_size=1.0)
    assert vox.keep[5000:].sum() >= 15  # voxel sampling keeps it (at least one per voxel that carries score)


def test_amplify_compensates_mass_and_never_shrinks(rng):
    n = 400
    s = GaussianScene(
        rng.normal(size=(n, 3)),
        np.tile([1.0, 0, 0, 0], (n, 1)),
        np.full((n, 3), -3.0),
        np.full(n, -1.0),
        np.zeros((n, 1, 3)),
    )
    keep = np.arange(n) % 4 == 0
    vox = np.zeros(n, np.int64)
    out, st = P.amplify(s, keep, vox, strength=1.0)
    assert out.n == keep.sum()
    assert (out.opacities >= s.opacities[keep] - 1e-6).all() and (out.log_scales >= s.log_scales[keep] - 1e-6).all()
    m_after = P.coverage_mass(out).sum()
    assert m_after > P.coverage_mass(s.subset(keep)).sum() * 2  # most of the removed mass is handed over
    assert st["gain_max"] == pytest.approx(4.0)
    same, st0 = P.amplify(s, np.ones(n, bool), vox)
    assert same.equal(s) and st0["amplified"] == 0


def test_split_sh_and_fold(rng):
    s = load(SH3)
    score = rng.uniform(size=s.n)
    out, full = P.split_sh(s, score, 0.25)
    assert full.sum() == round(0.25 * s.n)
    assert np.all(out.sh[~full, 1:] == 0) and np.array_equal(out.sh[full], s.sh[full])
    cams = np.array([[0, 0, -5.0], [3, 1, 2]])
    folded, _ = P.split_sh(s, score, 0.25, fold_dirs=cams)
    # folding changes DC exactly by the mean removed-band colour over the given camera directions
    from exgs_core.conventions import SH_C0
    from exgs_core.render.sh import sh_to_color

    i = np.flatnonzero(~full)[:20]
    rest = s.sh[i].copy()
    rest[:, 0] = 0
    mean = np.mean([sh_to_color(rest, s.means[i] - c, offset=False) for c in cams], axis=0)
    np.testing.assert_allclose(folded.sh[i, 0], s.sh[i, 0] + mean / SH_C0, atol=1e-5)


def test_compress_round_trip_and_report():
    scene = load(DONUT)
    data, rep = compress(scene, CompressOptions(ratio=0.25, **FAST))
    back = decompress(data)
    assert back.n == rep.gaussians_out == 500 and rep.bytes_out == len(data)
    assert rep.bytes_sh3_ply == scene.ply_size_bytes(3)
    assert set(rep.seconds) >= {"score", "prune", "encode", "total"}
    # deterministic bytes
    assert compress(scene, CompressOptions(ratio=0.25, **FAST))[0] == data


@pytest.mark.slow
def test_codec_choice_walks_down_the_ladder_while_the_saving_is_worth_the_loss():
    import math

    from exgs_core.compress import CODEC_DB_PER_DOUBLING, CODEC_LADDER
    from exgs_core.exgs_format import CodecOptions, describe

    scene = load(DONUT)
    data, rep = compress(scene, CompressOptions(ratio=0.25, **FAST))
    c = rep.sampling["codec"]
    tried = c["tried"]
    assert [t["codec"] for t in tried] == list(CODEC_LADDER)[: len(tried)]
    assert all(a["bytes"] > b["bytes"] for a, b in zip(tried, tried[1:], strict=False))  # each step is smaller
    # replay the rule: keep stepping while the loss against the kept step is within what the saving is worth
    kept = tried[0]
    for t in tried[1:]:
        worth = CODEC_DB_PER_DOUBLING * math.log2(kept["bytes"] / t["bytes"])
        assert abs(worth - t["saving_worth_db"]) < 2e-3
        if kept["view_psnr"] - t["view_psnr"] > worth + 1e-3:
            break
        kept = t
    head = rep.sampling.get("head", {})
    head_bytes = head["bytes"] if head.get("kept") else 0  # the scene head is its own section after the codec's bytes
    assert c["chosen"] == kept["codec"] and len(data) == kept["bytes"] + head_bytes
    used = describe(data)["options"]
    assert used["rotation_bits"] == CODEC_LADDER[c["chosen"]].get("rotation_bits", 10)
    # an explicit codec is used as given; an unpruned scene keeps the default precision
    fixed, rep2 = compress(scene, CompressOptions(ratio=0.25, **FAST), codec=CodecOptions(rotation_bits=12))
    assert describe(fixed)["options"]["rotation_bits"] == 12 and "codec" not in rep2.sampling
    _, rep3 = compress(scene, CompressOptions(ratio=1.0, **FAST))
    assert rep3.sampling["codec"]["chosen"] == "default"


def test_fixed_codec_choices_and_cli_fast(tmp_path, capsys):
    from exgs_core.compress import COMPACT_CODEC
    from exgs_core.exgs_format import describe

    scene = load(DONUT)
    for choice, bits in (("compact", COMPACT_CODEC["rotation_bits"]), ("default", 10), ("coarse", 7)):
        data, rep = compress(scene, CompressOptions(ratio=0.25, codec=choice, **FAST))
        assert describe(data)["options"]["rotation_bits"] == bits and "codec" not in rep.sampling
    with pytest.raises(ValueError, match="codec"):
        CompressOptions(codec="tiny")
    out = tmp_path / "f.exgs"
    assert (
        main(["compress", str(DONUT), "-o", str(out), "--fast", "--views", "6", "--view-size", "64", "-q", "--json"])
        == 0
    )
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["sampling"]["method"] == "pairwise" and describe(out.read_bytes())["options"]["rotation_bits"] == 8
    assert rep["views"] == 6  # given views are kept
    # --fast scores on FAST_PRESET's automatic views unless --views is given; the default scores on 24
    from exgs_core.presets import FAST_PRESET

    for extra, views in ((["--fast"], FAST_PRESET["views"]), ([], 24)):
        argv = ["compress", str(DONUT), "-o", str(out), "--view-size", "32", "--head", "off", "-q", "--json"]
        assert main(argv + extra) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["views"] == views


def test_cli_suggests_fast_on_large_scenes(tmp_path, capsys, monkeypatch):
    """From FAST_HINT_GAUSSIANS on, a default compress says --fast exists before the long wait; not with --fast or
    -q."""
    import exgs_core.cli as C

    monkeypatch.setattr(C, "FAST_HINT_GAUSSIANS", 2000)  # the donut's 2,000 Gaussians count as large
    base = ["compress", str(DONUT), "-o", str(tmp_path / "a.exgs"), "--views", "4", "--view-size", "32"]
    hint = "--fast is about 5x quicker"
    for extra, shown in (([], True), (["--fast"], False), (["-q"], False)):
        assert main(base + ["--head", "off", *extra]) == 0
        assert (hint in capsys.readouterr().err) == shown, extra
    monkeypatch.setattr(C, "FAST_HINT_GAUSSIANS", 2001)
    assert main(base + ["--head", "off"]) == 0
    assert hint not in capsys.readouterr().err


def test_compress_sanitizes_with_a_report_and_leaves_input_alone():
    scene = load(DONUT)
    scene.means[3] = np.nan
    scene.quats[7] = 0
    data, rep = compress(scene, CompressOptions(ratio=0.5, **FAST))
    assert any("NaN/Inf" in a for a in rep.sanitize_actions) and any("identity" in a for a in rep.sanitize_actions)
    assert np.isnan(scene.means[3, 0])
    assert decompress(data).n == round(0.5 * 1999)


@pytest.mark.slow
def test_target_bytes_is_met():
    scene = load(DONUT)
    full, _ = compress(scene, CompressOptions(ratio=1.0, **FAST))
    target = len(full) // 3
    data, rep = compress(scene, CompressOptions(target_bytes=target, **FAST))
    assert len(data) <= target and len(data) > 0.8 * target
    # the codec is chosen once (on the first pruned trial) and the file uses that choice
    from exgs_core.compress import CODEC_LADDER
    from exgs_core.exgs_format import describe

    c = rep.sampling["codec"]
    assert c["chosen"] in CODEC_LADDER and len(rep.sampling["target_search"]) >= 2
    assert describe(data)["options"]["rotation_bits"] == CODEC_LADDER[c["chosen"]].get("rotation_bits", 10)
    with pytest.raises(ExgsError, match="cannot reach"):
        compress(scene, CompressOptions(target_bytes=50, **FAST))


def test_progress_and_cancel():
    scene = load(DONUT)
    seen = []
    compress(scene, CompressOptions(ratio=0.5, **FAST), progress=lambda f, s: seen.append(f))
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen) and len(seen) > 5
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        compress(scene, CompressOptions(ratio=0.5, **FAST), cancel=cancel)


def test_pruning_improves_over_random_at_equal_count():
    from exgs_core.metrics import psnr
    from exgs_core.render import render
    from exgs_core.views import auto_views

    scene = load(DATA / "plant_2000.splat")
    opts = CompressOptions(ratio=0.3, **FAST)
    pruned, _, _ = prune(scene, opts)
    rnd = scene.subset(np.random.default_rng(0).permutation(scene.n)[: pruned.n])
    cams = auto_views(scene, 3, 96, 96, split="eval")
    ours = np.mean([psnr(render(scene, c).rgb, render(pruned, c).rgb) for c in cams])
    base = np.mean([psnr(render(scene, c).rgb, render(rnd, c).rgb) for c in cams])
    assert ours > base + 1.0


def test_cli_compress_decompress_info_eval(capsys, tmp_path):
    out = tmp_path / "d.exgs"
    assert (
        main(["compress", str(DONUT), "-o", str(out), "--ratio", "0.5", "--views", "6", "--view-size", "64", "-q"]) == 0
    )
    text = capsys.readouterr().out
    assert "2,000 -> 1,000" in text and "vs the scene as SH3 PLY" in text
    assert main(["info", "--json", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "exgs" and info["gaussians"] == 1000
    secs = {x["name"]: x for x in info["exgs"]["sections"]}
    assert sum(x["bytes"] for x in secs.values()) < out.stat().st_size
    assert info["exgs"]["version"] == (2 if any(x["codec"] == "range coder" for x in secs.values()) else 1)
    assert main(["info", str(out)]) == 0
    assert "section           sh_dc" in capsys.readouterr().out
    ply = tmp_path / "d.ply"
    assert main(["decompress", str(out), "-o", str(ply)]) == 0
    capsys.readouterr()
    assert load(ply).n == 1000
    assert main(["eval", str(DONUT), str(out), "--views", "2", "--size", "48x48", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["bytes_candidate"] == out.stat().st_size and 10 < r["psnr"] < 100
    assert main(["compress", str(DONUT), "-o", str(tmp_path / "x.txt")]) == 2  # no format has that ending
    assert main(["compress", str(DONUT), "-o", str(tmp_path / "x.exgs"), "--ratio", "1.5"]) == 2
    assert not (tmp_path / "x.exgs").exists()


def test_merge_conserves_moments():
    # two identical-colour isotropic Gaussians merged into one: centre at the mass-weighted mean, spread in
    # the covariance along the separation axis, colour the weighted mean, opacity within [own, 0.99]
    s = GaussianScene(
        np.array([[0, 0, 0], [1.0, 0, 0], [10, 0, 0]]),
        np.tile([1.0, 0, 0, 0], (3, 1)),
        np.log(np.full((3, 3), 0.1)),
        np.array([0.0, 0.0, 2.0]),
        np.array([[[1.0, 0, 0]], [[0.0, 1, 0]], [[0, 0, 1.0]]]),
    )
    keep = np.array([True, False, True])
    out, st = P.merge_into_survivors(s, keep)
    assert out.n == 2 and st["merged"] == 1
    np.testing.assert_allclose(out.means[0], [0.5, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out.sh[0, 0], [0.5, 0.5, 0], atol=1e-6)
    sc = np.sort(np.exp(out.log_scales[0]))
    np.testing.assert_allclose(sc, [0.1, 0.1, np.sqrt(0.01 + 0.25)], rtol=1e-5)
    assert 0.5 <= out.opacities[0] <= 0.99
    # the lone survivor is unchanged, bit for bit
    assert np.array_equal(out.means[1], s.means[2]) and out.opacity_logits[1] == s.opacity_logits[2]


def test_merge_beats_plain_pruning():
    from exgs_core.metrics import psnr
    from exgs_core.render import render
    from exgs_core.views import auto_views

    scene = load(DATA / "plant_2000.splat")
    cams = auto_views(scene, 3, 96, 96, split="eval")
    res = {}
    for comp in ("merge", "none"):
        p, _, _ = prune(scene, CompressOptions(ratio=0.2, compensation=comp, **FAST))
        res[comp] = np.mean([psnr(render(scene, c).rgb, render(p, c).rgb) for c in cams])
    assert res["merge"] > res["none"] + 0.5


@pytest.mark.slow
def test_axis_facts_survive_compression():
    spz = load(DATA / "playcanvas_biker_head4096.v4.spz")
    data, _ = compress(spz, CompressOptions(ratio=0.5, **FAST))
    back = decompress(data)
    assert back.up == (0.0, 1.0, 0.0)
    pdal = load(DATA / "pdal_fourth_st_sh3_head4096.v2.spz")
    assert pdal.antialiased
    assert decompress(compress(pdal, CompressOptions(ratio=0.5, **FAST))[0]).antialiased


def test_pairwise_merge_hits_the_budget_and_drops_invisible(rng):
    scene = load(DATA / "plant_2000.splat")
    score = rng.uniform(size=scene.n)
    score[:300] = 0.0  # invisible
    out, st = P.pairwise_merge(scene, score, 500)
    assert out.n == 500 and st["dropped"] >= 300 and st["rounds"] >= 2
    assert out.validate().ok
    data, rep = compress(scene, CompressOptions(ratio=0.25, compensation="pairwise", **FAST))
    assert decompress(data).n == 500


@pytest.mark.parametrize("rule", list(AUTO_RULES))
def test_merge_tail_rebuilds_the_merge_to_a_few_more_exactly(rule, rng):
    """The retention probe's merge (the same scene down to a few more Gaussians) is rebuilt from the last round of
    the kept merge, bit for bit what a merge of its own gives; outside the last round there is no shortcut."""
    from exgs_core.prune.merge import merge_with_tail

    scene = load(DATA / "supersplat_label_sh3_1000.ply")
    score = rng.uniform(0.01, 1.0, size=scene.n)
    out, stats, tail = merge_with_tail(scene, score, 100, AUTO_RULES[rule], tail=True)
    assert tail is not None and out.n == 100 and P.pairwise_merge(scene, score, 100, AUTO_RULES[rule])[0].n == 100
    for count in (100, 101, 110, len(tail.means)):
        got, _ = tail.at(count)
        want, _ = P.pairwise_merge(scene, score, count, AUTO_RULES[rule])
        assert got.n == count
        for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f"{rule} {count} {f}")
    assert tail.at(99) is None and tail.at(len(tail.means) + 1) is None
    assert merge_with_tail(scene, score, 100, AUTO_RULES[rule])[2] is None  # only when asked


def test_pairwise_kl_variant_hits_the_budget_and_conserves_mass(rng):
    scene = load(DATA / "plant_2000.splat")
    score = rng.uniform(0.5, 1.0, size=scene.n)
    for kw in (
        dict(cost="kl", mass="surface", opacity_floor=0.0, color="all"),
        dict(cost="kl", samples=4),
        dict(cost="ward", opacity_floor=0.5),
    ):
        out, st = P.pairwise_merge(scene, score, 700, PairwiseRule(drop_score_fraction=0.0, **kw))
        assert out.n == 700 and out.validate().ok and st["dropped"] == 0
    for bad in (dict(cost="nope"), dict(mass="volume"), dict(color="sh1")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PairwiseRule(**bad)
    # two identical Gaussians merge into one with the opacity that keeps their coverage mass (capped at 0.99)
    two = GaussianScene(
        np.zeros((2, 3)),
        np.tile([1.0, 0, 0, 0], (2, 1)),
        np.full((2, 3), np.log(0.1)),
        np.full(2, logit(np.float64(0.3))),
        np.zeros((2, 1, 3)),
    )
    one, _ = P.pairwise_merge(two, np.ones(2), 1, PairwiseRule(drop_score_fraction=0.0, cost="kl", opacity_floor=0.0))
    assert one.n == 1 and np.allclose(one.opacities, 0.6, atol=1e-5)
    assert np.allclose(np.exp(one.log_scales), 0.1, rtol=1e-4)


def test_merge_rules_are_frozen_dataclasses_by_name():
    import dataclasses

    from exgs_core.compress import PAIRWISE

    assert set(PAIRWISE) == {"pairwise", "pairwise-kl"} and set(AUTO_RULES) == {*PAIRWISE, "pairwise-kl+drop"}
    assert PAIRWISE["pairwise"] == PairwiseRule(cost="ward", mass="projected", opacity_floor=1.0, color="dc")
    assert PAIRWISE["pairwise-kl"] == PairwiseRule(
        cost="kl", mass="surface", opacity_floor=0.0, color="all", drop_score_fraction=0.0, visibility_weight=True
    )
    assert AUTO_RULES["pairwise-kl+drop"] == dataclasses.replace(PAIRWISE["pairwise-kl"], drop_score_fraction=0.02)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAIRWISE["pairwise"].cost = "kl"


def test_kl_cost_prefers_overlapping_similar_pairs():
    means = np.array([[0, 0, 0], [0.01, 0, 0], [0, 0, 0], [3.0, 0, 0]], np.float64)
    chol = np.tile(np.eye(3) * 0.5, (4, 1, 1))
    logdet = np.full(4, 3 * 2 * np.log(0.5))
    z = np.random.default_rng(0).standard_normal((4, 3))
    c = M._kl_costs(means, chol, logdet, np.ones(4), np.array([0, 2]), np.array([1, 3]), z)
    # well separated: KL = -ln 2 + ln(std_merged / std) = -0.693 + 0.5 ln(2.5 / 0.25) = 0.46 along x
    assert abs(c[0]) < 0.01 and 0.3 < c[1] < 0.7


def test_auto_compensation_picks_the_better_variant_on_the_scoring_views():
    scene = load(DATA / "plant_2000.splat")
    _, rep = compress(scene, CompressOptions(ratio=0.25, **FAST))
    s = rep.sampling
    assert s["method"] == "auto" and s["chosen"] in AUTO_RULES and sorted(s["view_psnr"]) == sorted(AUTO_RULES)
    assert s["view_psnr"][s["chosen"]] == max(s["view_psnr"].values())


@pytest.mark.slow
def test_target_bytes_with_sh_keep_auto_fits_and_reports_the_choice():
    scene = load(SH3)
    target = 20_000
    data, rep = compress(scene, CompressOptions(target_bytes=target, sh_keep_auto=True, **FAST))
    assert len(data) <= target
    tried = rep.sampling["sh_keep_search"]
    assert sorted(t["sh_keep"] for t in tried) == [0.1, 0.3, 1.0]
    assert all(t["bytes"] <= target for t in tried)
    best = max(tried, key=lambda t: t["view_psnr"])
    assert rep.bytes_out == best["bytes"] and rep.gaussians_out == best["gaussians"]
    back = decompress(data)
    assert back.n == best["gaussians"]
    assert (np.abs(back.sh[:, 1:]).sum((1, 2)) > 0).mean() == pytest.approx(best["sh_keep"], abs=0.02)
    # DC-only scenes have nothing to choose: one plain search
    _, rep0 = compress(load(DONUT), CompressOptions(target_bytes=target, sh_keep_auto=True, **FAST))
    assert "sh_keep_search" not in rep0.sampling


def test_edge_order_is_ascending_with_ties_by_index_and_non_finite_last():
    c = np.array([3.0, -1.0, np.inf, -1.0, np.nan, 0.5, 3.0])
    assert M._order_by_cost(c).tolist() == [1, 3, 5, 0, 6, 2, 4]
    rng = np.random.default_rng(1)
    c = rng.normal(size=10_000)
    o = M._order_by_cost(c)
    assert sorted(o.tolist()) == list(range(c.size))
    assert np.all(np.diff(c[o]) >= -1e-6)  # ascending up to float32 resolution


def test_choices_are_judged_on_check_views_rendered_once():
    """The merge rule, codec and SH share are judged on 'check' views: never scored on, never the eval views, at
    twice the scoring size; a size search renders the full scene on them once."""
    from exgs_core import compress as C
    from exgs_core.views import auto_views

    scene = load(DONUT)
    opts = CompressOptions(**FAST)
    check = C.check_cameras(scene, opts, None)
    assert len(check) == C.CHECK_VIEWS and check[0].width == 2 * opts.view_size
    train = C.scoring_cameras(scene, opts, None)
    evals = auto_views(scene, 8, 2 * opts.view_size, 2 * opts.view_size, split="eval")
    pos = np.array([c.position for c in check])
    for other in (train, evals):
        d = np.linalg.norm(pos[:, None] - np.array([c.position for c in other])[None], axis=-1)
        assert d.min() > 1e-3 * np.linalg.norm(pos[0])
    import exgs_core.render as R

    real_render = R.render
    full_renders = []  # check-size renders of the full (unpruned) scene

    def counting_render(s, cam, **kw):
        if s.n == scene.n and cam.width == 2 * opts.view_size:
            full_renders.append(cam.name)
        return real_render(s, cam, **kw)

    R.render = counting_render
    try:
        full, _ = compress(scene, CompressOptions(ratio=1.0, **FAST))
        assert full_renders == []  # nothing pruned: nothing to judge
        data, rep = compress(scene, CompressOptions(target_bytes=len(full) // 3, **FAST))
    finally:
        R.render = real_render
    assert len(rep.sampling["target_search"]) >= 2 and "tried" in rep.sampling["codec"]
    # each check view of the full scene rendered at most once per compress, however many trials, and only the views
    # a decision needed (every other one first, the rest where it was close); the scene head's fit renders the
    # full scene on training views, never on check views
    names = {c.name for c in check}
    on_check = [n for n in full_renders if n in names]
    assert len(on_check) == len(set(on_check)) and set(on_check) >= {c.name for c in check[::2]}
    assert all(n not in names for n in full_renders if n.startswith("train"))
    # CheckViews renders the full scene on first use only: later judgements render just the candidate
    views = C.CheckViews(scene, opts, None)
    first = views.references
    R.render = counting_render
    try:
        full_renders.clear()
        p = views.psnr(decompress(data))
        assert views.references is first and full_renders == [] and 10 < p < 100
    finally:
        R.render = real_render


def test_visibility_weight_merges_what_the_views_do_not_see_first(rng):
    n = 200
    means = np.concatenate([rng.uniform(0, 1, (100, 3)), rng.uniform(0, 1, (100, 3)) + [5, 0, 0]])
    scene = GaussianScene(
        means,
        np.tile([1.0, 0, 0, 0], (n, 1)),
        np.full((n, 3), np.log(0.05)),
        np.zeros(n),
        rng.uniform(-1, 1, (n, 1, 3)),
    )
    score = np.concatenate([np.ones(100), np.full(100, 1e-6)])  # the second cluster is (nearly) invisible
    out, st = P.pairwise_merge(
        scene, score, 170, PairwiseRule(drop_score_fraction=0.0, cost="kl", visibility_weight=True)
    )
    assert out.n == 170 and st["dropped"] == 0
    # (a round takes as many disjoint pairs as it needs, so leave the greedy matching room: 30 of 50 possible)
    # every merge happened inside the invisible cluster: the visible one comes through unchanged
    near_visible = out.means[:, 0] < 2.5
    assert near_visible.sum() == 100
    d = np.abs(out.means[near_visible][:, None] - means[:100][None]).sum(-1).min(1)
    assert d.max() < 1e-5
    plain, _ = P.pairwise_merge(scene, score, 170, PairwiseRule(drop_score_fraction=0.0, cost="kl"))
    assert (plain.means[:, 0] < 2.5).sum() < 100  # without the weight both clusters lose Gaussians


def test_psd_cholesky_survives_rounding_indefinite_covariances():
    good = np.diag([1.0, 0.5, 1e-6])[None]
    bad = np.array([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, -1e-9]]])  # rank-deficient and slightly negative
    chol = M._psd_cholesky(np.concatenate([good, bad]))
    assert np.all(np.isfinite(chol)) and np.allclose(chol[0] @ chol[0].T, good[0], atol=1e-9)
    assert np.allclose(chol[1] @ chol[1].T, [[1, 1, 0], [1, 1, 0], [0, 0, 0]], atol=1e-6)


def _blob(n, deg=0, scale=1.0, seed=0):
    r = np.random.default_rng(seed)
    return GaussianScene(
        (r.normal(size=(n, 3)) * scale).astype(np.float32),
        r.normal(size=(n, 4)).astype(np.float32),
        np.full((n, 3), np.log(0.05 * scale), np.float32),
        np.full(n, 2.0, np.float32),
        (r.normal(size=(n, (deg + 1) ** 2, 3)) * 0.3).astype(np.float32),
    )


@pytest.mark.parametrize("compensation,voxels", [("auto", True), ("merge", True), ("amplify", False)])
@pytest.mark.parametrize("n,deg", [(1, 0), (2, 0), (3, 3)])
def test_tiny_scenes_compress(n, deg, compensation, voxels):
    """Found by probing: rho x N rounding to 0 Gaussians crashed the pairwise merge (a 1-D neighbour array) and the
    voxel sampler (np.partition out of bounds), and top-k silently kept nothing. A non-empty scene now always keeps
    at least one Gaussian (prune.keep_count)."""
    opts = CompressOptions(ratio=0.1, compensation=compensation, voxel_sampling=voxels, **FAST)
    data, rep = compress(_blob(n, deg), opts)
    out = decompress(data)
    assert out.n == rep.gaussians_out == 1 and out.validate().ok


@pytest.mark.parametrize("scale", [1e15, 1e-15])
def test_scenes_at_extreme_scales_compress(scale):
    """Found by probing: automatic views of a scene ~1e15 units across put every Gaussian beyond the default far
    plane (1e10), a CameraError for a user who gave no cameras. The far plane now follows the view distance."""
    data, rep = compress(_blob(500, scale=scale), CompressOptions(ratio=0.1, **FAST))
    out = decompress(data)
    assert out.n == 50 and out.validate().ok
    np.testing.assert_allclose(np.median(np.abs(out.means)) / scale, np.median(np.abs(_blob(500).means)), rtol=0.5)


def test_given_cameras_that_see_nothing_are_a_camera_error():
    """Cameras for another scene or axis convention see none of the Gaussians: every score is 0 and the pruning
    would be arbitrary, so compress says so instead of writing a meaningless file."""
    from exgs_core import Camera, CameraError
    from exgs_core.views import auto_views

    s = load(DONUT)
    cams = auto_views(s, 3, 64, 64)
    centre = s.means.mean(0)
    away = [Camera.look_at(c.position, 2 * c.position - centre, [0, -1, 0], 50, 64, 64) for c in cams]
    with pytest.raises(CameraError, match="none of the 3 given camera"):
        compress(s, CompressOptions(ratio=0.2, **FAST), cameras=away)
    data, rep = compress(s, CompressOptions(ratio=0.2, **FAST), cameras=cams[:1])  # one useful view is enough
    assert rep.gaussians_out == 400


@pytest.mark.parametrize("rho, sh_keep, kept_small", [(0.25, 0.2, True), (0.5, 0.5, False)])
def test_codec_choice_tries_the_smaller_sh_palette_and_size_searches_keep_it(rho, sh_keep, kept_small):
    """On a scene with higher SH the codec choice also judges the chosen step with the smaller SH palette
    (``small_sh_palette``: a quarter of the default, at least 16 entries) by the ladder's rule; the file uses the
    palette the report names, and a size search's later trials keep that choice for their own scene."""
    import math

    from exgs_core.compress import CODEC_DB_PER_DOUBLING, small_sh_palette
    from exgs_core.exgs_format import describe

    assert small_sh_palette(91) == 22 and small_sh_palette(1300) == 64 and small_sh_palette(20) == 16
    assert small_sh_palette(16) is None and small_sh_palette(0) is None
    scene = load(DATA / "pdal_fourth_st_sh3_head4096.v2.spz")
    data, rep = compress(scene, CompressOptions(ratio=rho, sh_keep=sh_keep, head="off", **FAST))
    c = rep.sampling["codec"]
    last = c["tried"][-1]
    size = small_sh_palette(describe(data)["n_sh_full"])
    assert size is not None and last["codec"] == f"{c['chosen']}, SH palette {size}", c
    kept = next(t for t in c["tried"] if t["codec"] == c["chosen"])
    assert last["bytes"] < kept["bytes"]
    assert abs(last["saving_worth_db"] - CODEC_DB_PER_DOUBLING * math.log2(kept["bytes"] / last["bytes"])) < 2e-3
    took = last["loss_db"] <= last["saving_worth_db"]
    assert took == kept_small, c  # this fixture: taken at 25 % / 20 % SH (loss 0.69 < 1.30 dB), refused at 50 / 50
    assert (c.get("sh_palette_size") == size) == took and (len(data) == last["bytes"]) == took
    d = describe(data)
    assert d["quant"]["sh_rest"]["size"] == (size if took else min(d["n_sh_full"], 256))
    assert d["options"]["sh_palette_size"] == (size if took else None)
    # a size search decides once and its later trials use the smaller palette of their own scene
    target = int(len(data) * 0.8)
    small, rep2 = compress(scene, CompressOptions(target_bytes=target, sh_keep=sh_keep, head="off", **FAST))
    c2, d2 = rep2.sampling["codec"], describe(small)
    assert len(small) <= target and len(rep2.sampling["target_search"]) >= 2
    want = small_sh_palette(d2["n_sh_full"]) if c2.get("sh_palette_size") else None
    assert d2["options"]["sh_palette_size"] == want, (c2, d2["options"])
    assert bool(c2.get("sh_palette_size")) == kept_small
