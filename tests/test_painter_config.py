"""GaussPainter weights: hostile config.json values and file types, and non-finite restorations.

Every config value is checked (type, range, finiteness) before any module is built, so a config that would take
minutes and gigabytes to build, or make every restored pixel NaN, is a :class:`PainterWeightsError` in
milliseconds; a restoration that still comes out non-finite is a :class:`RestoreError`; a config.json that is not a
regular file (symlink loop, device, FIFO, directory, huge) is reported as what it is, not as "missing".
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

from exgs_core.errors import ExgsError  # noqa: E402
from exgs_core.painter import classical  # noqa: E402
from exgs_core.painter import model as pm  # noqa: E402
from exgs_core.painter.model import (  # noqa: E402
    WEIGHTS_NAME,
    PainterWeightsError,
    load_painter,
    make_painter,
    save_painter,
)
from exgs_core.painter.restore import DEFAULT_WEIGHTS, Restorer  # noqa: E402

TINY = {"vae_channels": 8, "latent_channels": 4, "unet_channels": [8, 16], "norm_num_groups": 4, "out_init_scale": 1.0}


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_src(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("painter") / "tiny"
    save_painter(make_painter(TINY), d)
    return d


def _variant(tiny_src, tmp_path, name="v", **changes):
    d = tmp_path / name
    shutil.copytree(tiny_src, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))  # json.dumps writes NaN / Infinity for non-finite floats
    return d


def _expect(folder, *needles, within: float = 5.0):
    t = time.perf_counter()
    with pytest.raises(PainterWeightsError) as ei:
        load_painter(folder)
    dt = time.perf_counter() - t
    assert isinstance(ei.value, ExgsError)
    msg = str(ei.value)
    for n in needles:
        assert n in msg, msg
    assert dt < within, f"took {dt:.1f} s: {msg}"
    return ei.value


# -- values ------------------------------------------------------------------------------------------------------
BAD_VALUES = [
    ("layers_per_block", 100000),  # minutes and ~4 GB just to build, before this check
    ("layers_per_block", 0),
    ("layers_per_block", True),  # a bool is not a count
    ("layers_per_block", "1"),
    ("layers_per_block", 1.5),
    ("close_radius", 1500),  # 29 s per 64x64 frame
    ("close_radius", 100000),  # an untyped RuntimeError asking for 160 GB
    ("close_radius", -1),
    ("unet_channels", [8] * 40),
    ("unet_channels", [8, 0]),
    ("unet_channels", [8, 1 << 20]),
    ("unet_channels", "8,16"),
    ("unet_channels", []),
    ("num_encoder_blocks", [0, 100000, 1]),
    ("num_encoder_blocks", [0] * 30),
    ("num_decoder_blocks", [1, 1]),  # not as many levels as the encoder: fails only at the first restore
    ("latent_channels", 0),
    ("latent_channels", 10**9),
    ("vae_channels", 10**9),
    ("norm_num_groups", 3),  # does not divide the UNet's channels
    ("norm_num_groups", 0),
    ("norm_num_groups", 8),  # one channel per group: GroupNorm fails on the 1x1 maps of small frames
    ("unet_channels", [8, 4]),  # the middle block's attention would have 4 // 8 = 0 heads
    ("timestep", -5),
    ("timestep", 10**12),
    ("in_channels", 8),  # the conditioning is always P (3) + I (3) + M (1)
    ("use_depth", "yes"),
    ("after_head", 0),  # a flag, not a number
    ("skip_base", "nothing"),
    ("out_init_scale", -1.0),
    ("residual_scale", 1e6),
    ("residual_scale_hole", "1"),
    ("residual_scale_visible", None),
    ("version", True),  # True == 1 in Python
]


@pytest.mark.parametrize("key,value", BAD_VALUES, ids=[f"{k}={str(v)[:12]}" for k, v in BAD_VALUES])
def test_config_values_are_validated_before_building(tiny_src, tmp_path, key, value):
    d = _variant(tiny_src, tmp_path, **{key: value})
    e = _expect(d, key, within=5.0)
    assert e.path == os.path.join(str(d), "config.json")


@pytest.mark.parametrize("key", ["residual_scale_hole", "residual_scale_visible", "residual_scale", "out_init_scale"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_config_values_are_errors(tiny_src, tmp_path, key, value):
    """NaN residual scales used to load fine and restore every pixel as NaN."""
    d = _variant(tiny_src, tmp_path, **{key: value})
    _expect(d, "NaN or Infinity", key)


def test_non_finite_anywhere_in_config(tiny_src, tmp_path):
    d = _variant(tiny_src, tmp_path, "meta", val={"0.05": {"psnr": math.nan}})
    _expect(d, "NaN or Infinity", "val")
    d2 = tmp_path / "overflow"
    shutil.copytree(tiny_src, d2)
    text = (d2 / "config.json").read_text().replace('"out_init_scale": 1.0', '"out_init_scale": 1e999')
    assert "1e999" in text
    (d2 / "config.json").write_text(text)  # parses as float("inf")
    _expect(d2, "NaN or Infinity")


def test_deeply_nested_config_is_a_weights_error(tiny_src, tmp_path):
    d = tmp_path / "deep"
    shutil.copytree(tiny_src, d)
    (d / "config.json").write_text('{"x": ' + "[" * 200000 + "]" * 200000 + "}")
    _expect(d, "config")


def test_shipped_and_default_configs_are_valid():
    cfg = json.loads(open(os.path.join(DEFAULT_WEIGHTS, "config.json")).read())
    pm.validate_config(cfg)
    pm.validate_config(dict(pm.DEFAULT_CONFIG))
    pm.validate_config(dict(pm.DEFAULT_CONFIG, **TINY))


def test_largest_valid_config_builds_quickly():
    """The bounds keep the worst structure a config may ask for cheap to build (on the meta device, as
    load_painter does before comparing with the files): measured ~0.3 s on 2 cores."""
    b = pm.CONFIG_BOUNDS
    worst = dict(
        pm.DEFAULT_CONFIG,
        layers_per_block=b["layers_per_block"][1],
        unet_channels=[b["unet_channels"][1]] * b["unet_levels"][1],
        norm_num_groups=32,
        num_encoder_blocks=[b["vae_blocks"][1]] * b["vae_levels"][1],
        num_decoder_blocks=[b["vae_blocks"][1]] * b["vae_levels"][1],
        vae_channels=b["vae_channels"][1],
        latent_channels=b["latent_channels"][1],
        close_radius=b["close_radius"][1],
    )
    pm.validate_config(worst)
    t = time.perf_counter()
    with torch.device("meta"):
        make_painter(worst)
    assert time.perf_counter() - t < 10


def test_make_painter_validates_too():
    with pytest.raises(PainterWeightsError, match="layers_per_block"):
        make_painter({"layers_per_block": 100000})


# -- the restored output -------------------------------------------------------------------------------------------
def _frame(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    a = (rng.random((h, w)) < 0.7).astype(np.float32)
    return rng.random((h, w, 3)).astype(np.float32) * a[..., None], a


def test_non_finite_restoration_is_a_restore_error(tiny_src):
    r = Restorer.from_pretrained(tiny_src, device="cpu")
    rgb, a = _frame()
    assert np.isfinite(r.restore(rgb, a)).all()
    RestoreError = pm.RestoreError
    assert issubclass(RestoreError, ExgsError)
    # a scale changed after loading (the loader no longer accepts one from a file)
    r.model.config["residual_scale_hole"] = math.nan
    with pytest.raises(RestoreError, match="NaN"):
        r.restore(rgb, a)
    r.model.config["residual_scale_hole"] = 1.0
    assert np.isfinite(r.restore(rgb, a)).all()
    # an overflow inside the networks (inf - inf in the decoded residual)
    with torch.no_grad():
        conv = [m for m in r.model.vae.decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        conv.bias.fill_(math.inf)
    with pytest.raises(RestoreError) as ei:
        r.restore(rgb, a)
    assert ei.value.path == str(tiny_src)


# -- file types ------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="symlinks, devices and FIFOs")
def test_config_json_that_is_not_a_regular_file(tiny_src, tmp_path):
    def with_config(name, make):
        d = tmp_path / name
        shutil.copytree(tiny_src, d)
        os.remove(d / "config.json")
        make(d / "config.json")
        return d

    loop = with_config("loop", lambda p: os.symlink(p.name, p))
    e = _expect(loop, "symlink loop")
    assert "missing" not in str(e)
    dangling = with_config("dangling", lambda p: os.symlink("nowhere.json", p))
    _expect(dangling, "broken symlink")
    if os.path.exists("/dev/zero"):
        zero = with_config("zero", lambda p: os.symlink("/dev/zero", p))
        e = _expect(zero, "not a regular file", "character device")
        assert "missing" not in str(e)
    fifo = with_config("fifo", lambda p: os.mkfifo(p))
    _expect(fifo, "not a regular file", "FIFO", within=5.0)  # and never blocks waiting for a writer
    folder = with_config("dir", lambda p: p.mkdir())
    _expect(folder, "directory")
    big = with_config("big", lambda p: p.write_text("{" + " " * (pm.MAX_CONFIG_BYTES + 10) + "}"))
    _expect(big, "too large")
    _expect(tmp_path / "nope", "does not exist")
    missing = with_config("missing", lambda p: None)
    _expect(missing, "missing config.json")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_weights_file_that_is_not_a_regular_file(tiny_src, tmp_path):
    d = tmp_path / "w"
    shutil.copytree(tiny_src, d)
    os.remove(d / "unet" / WEIGHTS_NAME)
    os.symlink("/dev/zero", d / "unet" / WEIGHTS_NAME)
    e = _expect(d, "not a regular file", "character device")
    assert os.path.join("unet", WEIGHTS_NAME) in str(e)


# -- the closing's cost ----------------------------------------------------------------------------------------------
def test_close_alpha_separable_matches_square_window():
    torch.manual_seed(0)
    a = (torch.rand(2, 1, 37, 53) > 0.4).float() * torch.rand(2, 1, 37, 53)
    import torch.nn.functional as F

    for r in (1, 3, 7, 40):
        k = 2 * r + 1
        dil = F.max_pool2d(F.pad(a, (r,) * 4, mode="replicate"), k, stride=1)
        ero = -F.max_pool2d(F.pad(-dil, (r,) * 4, mode="replicate"), k, stride=1)
        torch.testing.assert_close(classical.close_alpha(a, r), torch.maximum(ero, a), rtol=0, atol=0)
    t = time.perf_counter()
    classical.close_alpha(torch.rand(1, 1, 512, 512), pm.CONFIG_BOUNDS["close_radius"][1])
    assert time.perf_counter() - t < 2  # the largest radius allowed stays cheap (measured ~0.05 s)
