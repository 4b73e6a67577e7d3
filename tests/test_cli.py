"""The exgs command line as a user drives it (in-process through main(), plus one real subprocess)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from exgs_testpaths import DATA, REPO
from PIL import Image

from exgs_core import load
from exgs_core.cli import main

DONUT = DATA / "donut_sh0_2000.ply"


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("info", "convert", "render", "eval"):
        assert cmd in out


def test_info_text_and_json(capsys):
    code, out, _ = run(capsys, "info", DONUT)
    assert code == 0 and "2,000" in out and "SH degree         0" in out and "bytes/Gaussian" in out
    code, out, _ = run(capsys, "info", "--json", DONUT)
    info = json.loads(out)
    assert info["format"] == "ply" and info["gaussians"] == 2000 and info["sh_degree"] == 0
    assert info["bytes_per_gaussian"] == pytest.approx(DONUT.stat().st_size / 2000)
    assert len(info["bounds_min"]) == 3


def test_info_bad_file_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "broken.ply"
    bad.write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 99\nproperty float x\nend_header\n" + b"\0" * 8
    )
    code, _, err = run(capsys, "info", bad)
    assert code == 2 and "exgs: error:" in err and "broken.ply" in err
    code, _, err = run(capsys, "info", tmp_path / "missing.spz")
    assert code == 2 and "missing.spz" in err


def test_convert_round_trip(capsys, tmp_path):
    out_ply = tmp_path / "out.ply"
    code, out, _ = run(capsys, "convert", DATA / "plant_2000.splat", out_ply)
    assert code == 0 and "2,000 Gaussians" in out
    a, b = load(DATA / "plant_2000.splat"), load(out_ply)
    assert a.equal(b)
    code, _, err = run(capsys, "convert", DONUT, tmp_path / "out.xyz")
    assert code == 2 and "cannot tell the output format" in err and ".spz" in err and ".glb" in err
    assert not (tmp_path / "out.xyz").exists()
    code, _, err = run(capsys, "convert", DONUT, tmp_path / "out.spz", "--ascii")
    assert code == 2 and "--ascii applies to .ply output only" in err


def test_render_writes_pngs(capsys, tmp_path):
    code, out, _ = run(
        capsys, "render", DONUT, "--views", 3, "--size", "64x48", "--out", tmp_path / "r", "-q", "--alpha"
    )
    assert code == 0
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert files == [
        "view_000.png",
        "view_000_alpha.png",
        "view_001.png",
        "view_001_alpha.png",
        "view_002.png",
        "view_002_alpha.png",
    ]
    img = np.asarray(Image.open(tmp_path / "r" / "view_000.png"))
    assert img.shape == (48, 64, 3)
    assert img.max() > 30  # something was drawn
    alpha = np.asarray(Image.open(tmp_path / "r" / "view_000_alpha.png"))
    assert 0.02 < (alpha > 0).mean() < 1.0


def test_render_rejects_bad_size(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["render", str(DONUT), "--size", "64by48", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_eval_self_is_maximal_and_json(capsys):
    code, out, _ = run(capsys, "eval", DONUT, DONUT, "--views", 2, "--size", "48x48", "--json")
    assert code == 0
    r = json.loads(out)
    assert r["identical"] is True and r["psnr"] == 100.0 and r["ssim"] == pytest.approx(1.0)
    assert r["bytes_reference"] == r["bytes_candidate"] == DONUT.stat().st_size
    code, out, _ = run(capsys, "eval", DONUT, DONUT, "--views", 2, "--size", "48x48", "-q")
    assert "identical renders" in out


def test_eval_detects_a_difference(capsys, tmp_path):
    s = load(DONUT)
    from exgs_core.io.ply import write_ply

    half = s.subset(np.arange(s.n) % 2 == 0)
    write_ply(half, tmp_path / "half.ply")
    code, out, _ = run(capsys, "eval", DONUT, tmp_path / "half.ply", "--views", 2, "--size", "48x48", "--json")
    r = json.loads(out)
    assert code == 0 and not r["identical"] and 5 < r["psnr"] < 60 and r["ssim"] < 1
    assert r["gaussians_candidate"] == 1000


def test_console_script_runs_as_a_process():
    r = subprocess.run(
        [sys.executable, "-m", "exgs_core.cli", "info", str(DONUT)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "format            ply" in r.stdout


def test_top_level_render_is_callable_even_after_submodule_imports():
    import exgs_core as ex
    import exgs_core.render.cpu  # noqa: F401  (importing a submodule must not break ex.render(...))
    from exgs_core.views import auto_views

    s = load(DONUT)
    cam = auto_views(s, 1, 32, 32)[0]
    assert ex.render(s, cam).rgb.shape == (32, 32, 3)


@pytest.fixture(scope="module")
def tiny_painter(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    import torch

    from exgs_core.painter.model import make_painter, save_painter

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("painter")
    save_painter(make_painter(), folder)
    return folder


def test_render_and_eval_with_restore(capsys, tmp_path, tiny_painter):
    code, out, _ = run(
        capsys,
        "render",
        DONUT,
        "--views",
        1,
        "--size",
        "48x40",
        "--out",
        tmp_path / "r",
        "-q",
        "--restore",
        "--painter-weights",
        tiny_painter,
    )
    assert code == 0 and "restored" in out
    img = np.asarray(Image.open(tmp_path / "r" / "view_000_restored.png"))
    assert img.shape == (40, 48, 3)
    code, out, _ = run(
        capsys,
        "eval",
        DONUT,
        DATA / "donut_sh0_300_ascii.ply",
        "--views",
        1,
        "--size",
        "48x48",
        "--json",
        "--painter-weights",
        tiny_painter,
    )
    r = json.loads(out)
    assert code == 0 and "psnr_restored" in r and "ssim_restored" in r
    code, _, err = run(
        capsys, "eval", DONUT, DONUT, "--views", 1, "--size", "48x48", "--painter-weights", tmp_path / "nope"
    )
    assert code == 2 and "nope" in err


def test_compress_head_and_refit_switches(capsys, tmp_path):
    """``--head off`` fits no scene head and ``--no-refit`` keeps the merged colours: the report says so, and the
    defaults do both (same Gaussians kept either way)."""
    fast = ["--ratio", "0.3", "--views", "6", "--view-size", "64", "--json", "-q"]
    code, out, _ = run(capsys, "compress", DONUT, "-o", tmp_path / "a.exgs", *fast)
    on = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and on["amplification"]["refit"] and on["sampling"]["head"]["fit_views"] > 0
    code, out, _ = run(capsys, "compress", DONUT, "-o", tmp_path / "b.exgs", *fast, "--head", "off", "--no-refit")
    off = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and "refit" not in off["amplification"] and not off["sampling"].get("head")
    assert off["gaussians_out"] == on["gaussians_out"]
    assert (tmp_path / "a.exgs").read_bytes() != (tmp_path / "b.exgs").read_bytes()


def test_train_painter_help_passes_through(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train-painter", "--help"])
    assert e.value.code == 0 and "--steps" in capsys.readouterr().out


def test_unwritable_outputs_are_clear_errors_before_any_work(capsys, tmp_path, monkeypatch):
    """A missing output folder is reported at once (not after minutes of compressing) and writes nothing."""
    import exgs_core.compress as C

    called = []
    monkeypatch.setattr(C, "compress", lambda *a, **k: called.append(1))
    missing = tmp_path / "no_such_folder"
    code, _, err = run(capsys, "compress", DONUT, "-o", missing / "x.exgs", "--ratio", "0.5")
    assert code == 2 and "no_such_folder" in err and "does not exist" in err and not called
    code, _, err = run(capsys, "convert", DONUT, missing / "x.ply")
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "convert", DONUT, tmp_path)  # a folder, not a file name
    assert code == 2 and "cannot tell the output format" in err
    (tmp_path / "afile").write_bytes(b"")
    code, _, err = run(capsys, "render", DONUT, "--out", tmp_path / "afile" / "sub", "--views", "1", "--size", "16x16")
    assert code == 2 and "cannot create the output folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_failing_write_is_an_output_error_and_leaves_nothing(tmp_path):
    from exgs_core.errors import OutputError
    from exgs_core.io.atomic import atomic_write

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match="out.bin: cannot write: No space left"):
        with atomic_write(target) as f:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.slow
def test_readme_python_block_runs(tmp_path):
    """The Python example in README.md, verbatim except for the file name, in a fresh interpreter (so a missing
    lazy attribute such as ``ex.views`` fails here, not in a user's first session)."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    text = (REPO / "README.md").read_text()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'ex.load("scene.spz")' in block
    code = block.replace('"scene.spz"', repr(str(DATA / "playcanvas_biker_head4096.v4.spz")))
    code += "\nassert restored.shape == res.rgb.shape == (512, 512, 3) and small.n == report.gaussians_out\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "scene.exgs").read_bytes()[:4] == b"EXGS"
    assert load(tmp_path / "small.spz").n == load(tmp_path / "scene.exgs").n


def test_eval_on_cameras_that_see_nothing_is_an_error(capsys, tmp_path):
    """Two black renders compare as identical (100 dB): with cameras that miss the scene that would be a false
    perfect score, so eval refuses and says why."""
    from exgs_core import Camera
    from exgs_core.views import auto_views, save_cameras_json

    s = load(DONUT)
    cams = auto_views(s, 2, 32, 32)
    away = [Camera.look_at(c.position, 2 * c.position - s.means.mean(0), [0, -1, 0], 50, 32, 32) for c in cams]
    save_cameras_json(away, tmp_path / "away.json")
    code, _, err = run(capsys, "eval", DONUT, DONUT, "--cameras", tmp_path / "away.json")
    assert code == 2 and "none of the 2 view(s) sees the reference scene" in err
    save_cameras_json(away[:1] + cams[:1], tmp_path / "half.json")
    code, out, err = run(capsys, "eval", DONUT, DONUT, "--cameras", tmp_path / "half.json")
    assert code == 0 and "1 of 2 view(s) show nothing" in err


def test_convert_spz_to_ply_writes_ply_axes(capsys, tmp_path):
    """An SPZ (right-up-back) converted to .ply lands in 3DGS PLY axes (right-down-forward), SH rotated with it,
    so a PLY viewer shows it the right way up."""
    from exgs_core.io.spz import to_ply_axes

    src = REPO / "examples" / "playcanvas_biker.spz"
    code, _, err = run(capsys, "convert", src, tmp_path / "b.ply")
    assert code == 0 and "right-down-forward" in err
    want = to_ply_axes(load(src))
    got = load(tmp_path / "b.ply")
    assert got.equal(want)
    assert not np.allclose(got.means, load(src).means)  # really converted


def test_convert_refuses_nan_with_counts(capsys, tmp_path):
    from exgs_core.io.ply import write_ply

    s = load(DATA / "plant_2000.splat")
    s.means[[3, 7]] = np.nan
    bad = tmp_path / "bad.ply"
    write_ply(s, bad)
    code, _, err = run(capsys, "convert", bad, tmp_path / "out.ply")
    assert code == 2 and "2 Gaussian(s) with NaN/Inf in means" in err and "--sanitize" in err
    assert not (tmp_path / "out.ply").exists()
    code, out, err = run(capsys, "convert", bad, tmp_path / "out.ply", "--sanitize")
    assert code == 0 and "1,998 Gaussians" in out and "dropped 2" in err


def test_compress_into_a_standard_container_counts_its_bytes(capsys, tmp_path):
    """``exgs compress IN -o OUT.ply`` writes the UGC-pruned scene with the PLY writer; --target-mb counts the
    container's real bytes; the result reads back with the ordinary reader."""
    out = tmp_path / "small.ply"
    code, text, _ = run(capsys, "compress", DONUT, "-o", out, "--target-mb", "0.05", "--fast", "-q")
    assert code == 0 and "(ply)" in text
    size = out.stat().st_size
    assert 0.8 * 50_000 <= size <= 50_000
    back = load(out)
    assert back.meta["format"] == "ply" and 0 < back.n < 2000
    code, _, err = run(capsys, "compress", DONUT, "-o", tmp_path / "x.obj", "--ratio", "0.5")
    assert code == 2 and "cannot tell the output format" in err


@pytest.mark.parametrize("container", ["sog", "spz"])
def test_sh_share_search_judges_the_container_it_writes(container):
    """``--target-mb`` without ``--sh-keep`` (the SH share is searched) into a standard container: each SH share is judged on the container's
    own decode in the source's axes (an SPZ source into SOG, into SPZ), and the file fits the target."""
    from exgs_core.compress import CompressOptions, compress

    scene = load(DATA / "pdal_fourth_st_sh3_head4096.v2.spz")
    fast = dict(views=6, view_size=64, head="off")
    full, _ = compress(scene, CompressOptions(ratio=0.3, **fast), container=container)
    target = int(0.8 * len(full))
    data, rep = compress(scene, CompressOptions(target_bytes=target, sh_keep_auto=True, **fast), container=container)
    tried = rep.sampling["sh_keep_search"]
    assert len(data) <= target and len(tried) == 3
    assert all(t["view_psnr"] > 30 for t in tried), tried  # a decode in the wrong axes scores 10-19 dB
