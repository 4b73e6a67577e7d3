"""GaussPainter network: a lightweight VAE (diffusers ``AutoencoderTiny``) + one denoising step (``UNet2DModel``).

Data flow for a render ``I`` (premultiplied RGB over black), its alpha ``A`` and coverage mask ``M = 1 - A``::

    P      = classical fill of I (coverage-aware push-pull, :mod:`.classical`)   # parameter-free pre-fill
    z_in   = E([P, I, M])                       # tiny VAE encoder, /4, ``latent_channels`` channels
    z_hat  = z_in + UNet([z_in, avgpool4(M)], t = TIMESTEP)   # the one denoising step (x0-prediction)
    out    = I + D(z_hat) - D(z_in)            # decoded *difference*: the skip path keeps everything the VAE
                                                #   cannot reconstruct (the render passes through untouched)

The skip path starts from the render ``I`` itself (``skip_base="input"``), not from ``P``: on our pruned
renders the classical fill alone *lowers* PSNR on average (UGC's amplification keeps coverage, so most error
is colour and blur, not holes; see BENCHMARKS.md), so the network sees ``P`` as an input and decides where to
use it, and an untrained model is exactly the identity on visible pixels.

``TIMESTEP`` is fixed (200 of 1000, Difix's choice: render artefacts behave like an intermediate noise level,
not pure noise). No noise is added, at training or inference: the degraded latent *is* the noisy latent, as in
Difix / pix2pix-turbo, so inference is deterministic. Without a pretrained diffusion prior the timestep is a
constant conditioning vector; it is kept so the network has the standard one-step-diffusion interface and a
later fine-tune from a real prior can reuse it.

Latent supervision: the clean target ``T`` encoded as a fully covered input, ``z* = E([T, T, 0])``, is the
latent the step should land on; training adds ``|z_hat - sg(z*)|`` and a VAE reconstruction term so that
``D(E(x))`` tracks ``x``.

Weights folder layout (``save_pretrained`` / :func:`load_painter`)::

    config.json                      {"format": "gausspainter", "version": 1, "timestep": 200, ...}
    vae/config.json, vae/diffusion_pytorch_model.safetensors
    unet/config.json, unet/diffusion_pytorch_model.safetensors

Only safetensors are ever read (never pickle / ``torch.load``); every problem raises
:class:`PainterWeightsError` naming the file and what is wrong. ``config.json`` must be a regular file of at most
:data:`MAX_CONFIG_BYTES`; every value in it is checked by :func:`validate_config` (type, range from
:data:`CONFIG_BOUNDS`, no NaN / Infinity anywhere, metadata included) before any module is built, so a hostile or
corrupt config costs milliseconds, not minutes and gigabytes. A restoration that still comes out NaN / Inf (say, a
network overflowing) raises :class:`RestoreError` instead of returning a NaN image.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from typing import Any, cast

from ..errors import ExgsError

FORMAT = "gausspainter"
VERSION = 1
TIMESTEP = 200
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


class PainterWeightsError(ExgsError):
    """A GaussPainter weights folder is missing, incomplete, not safetensors, or does not match its config, or its
    config.json holds a value of the wrong type, out of :data:`CONFIG_BOUNDS`, or NaN / Infinity."""


class RestoreError(ExgsError):
    """A restoration produced NaN or Inf pixels (broken weights, a network overflowing): nothing is returned."""


#: The largest config.json read (the shipped one is ~1.3 KB).
MAX_CONFIG_BYTES = 1 << 20

#: Inclusive ranges of the config values, checked by :func:`validate_config` before anything is built. Generous
#: for this tiny model (the shipped config is in brackets) but finite, so that the worst structure a config can
#: ask for builds in well under a second on the meta device and its pre-fill stays cheap:
#:
#: * ``timestep`` [200]: the fixed diffusion timestep, 0..1000 (the standard 1000-step schedule).
#: * ``in_channels`` [7]: always 7 (pre-fill 3 + render 3 + coverage 1; +1 with ``use_depth``, a bool).
#: * ``latent_channels`` [16] 1..64; ``vae_channels`` [16] 1..256 (TAESD uses 4 and 64).
#: * ``vae_levels`` [3]: ``len(num_encoder_blocks) == len(num_decoder_blocks)``, 1..4 (VAE downsampling /8 at
#:   most, as TAESD); ``vae_blocks`` [0,1,1]: each entry 0..6 (TAESD uses up to 3).
#: * ``unet_levels`` [3]: ``len(unet_channels)``, 1..5 (Stable Diffusion uses 4); ``unet_channels`` [32..128]:
#:   each 1..1024, the last at least 8 (the middle block's attention has channels // 8 heads);
#:   ``layers_per_block`` [1]: 1..4 (Stable Diffusion uses 2); ``norm_num_groups`` [8]: 1..128, must divide every
#:   UNet channel count leaving at least 2 channels per group (GroupNorm of a 1x1 map needs 2 values per group).
#: * ``close_radius`` [3]: the pre-fill's closing radius in pixels, 0..64 (pruning holes are a few pixels wide;
#:   the closing is separable, so 64 costs ~0.05 s per 512x512 frame).
#: * ``out_init_scale`` [0.1]: 0..10 (used when a model is created, before training).
#: * ``residual_scale``, ``residual_scale_visible``, ``residual_scale_hole`` [1, 0, 1]: -10..10 (the
#:   calibration clips them to [0, 1]; its unclipped least-squares values were within +-5).
#:
#: * ``after_head`` [true]: run the network after a file's scene head (``Restorer.restore(head=...)``); false: the
#:   head alone restores files that have one.
#:
#: ``skip_base`` is "input" or "prefill". Other keys (``trained_steps``, ``val``, ``calibration``, ...) are
#: metadata: only checked to hold no NaN / Infinity.
CONFIG_BOUNDS: dict[str, Any] = {
    "timestep": (0, 1000),
    "in_channels": (7, 7),
    "latent_channels": (1, 64),
    "vae_channels": (1, 256),
    "vae_levels": (1, 4),
    "vae_blocks": (0, 6),
    "unet_levels": (1, 5),
    "unet_channels": (1, 1024),
    "layers_per_block": (1, 4),
    "norm_num_groups": (1, 128),
    "close_radius": (0, 64),
    "out_init_scale": (0.0, 10.0),
    "residual_scale": (-10.0, 10.0),
    "residual_scale_visible": (-10.0, 10.0),
    "residual_scale_hole": (-10.0, 10.0),
}
SKIP_BASES = ("input", "prefill")
MID_ATTENTION_HEAD_DIM = 8  # diffusers UNet2DModel's default attention_head_dim


DEFAULT_CONFIG = {
    "format": FORMAT,
    "version": VERSION,
    "timestep": TIMESTEP,
    "in_channels": 7,  # P (3) + I (3) + M (1)
    "use_depth": False,
    "latent_channels": 16,
    "vae_channels": 32,
    "num_encoder_blocks": [0, 1, 1],
    "num_decoder_blocks": [1, 1, 0],
    "unet_channels": [32, 64, 128],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "close_radius": 3,
    "skip_base": "input",  # what the decoded residual is added to: "input" (the render) or "prefill"
    "out_init_scale": 0.1,
}


def _short(value) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def _non_finite_at(obj) -> str | None:
    """Dotted path of the first NaN / Inf float in a JSON-like value (iterative: any nesting), else None."""
    stack = [("", obj)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return where or "(top level)"
        if isinstance(v, dict):
            stack.extend((f"{where}.{k}" if where else str(k), x) for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v))
    return None


def validate_config(cfg: dict, path: str | None = None) -> None:
    """Check a painter config (missing keys taken from :data:`DEFAULT_CONFIG`) against :data:`CONFIG_BOUNDS`:
    every value's type and range, no NaN / Infinity anywhere; raises :class:`PainterWeightsError` naming the key
    (and ``path``). Costs microseconds and builds nothing."""
    if not isinstance(cfg, dict):
        raise PainterWeightsError("config is not a JSON object", path)
    bad = _non_finite_at(cfg)
    if bad is not None:
        raise PainterWeightsError(f"config holds NaN or Infinity at {bad!r} (not allowed anywhere)", path)
    full = dict(DEFAULT_CONFIG)
    full.update(cfg)
    B = CONFIG_BOUNDS

    def fail(key, value, want):
        raise PainterWeightsError(f"config value {key} = {_short(value)} is invalid: must be {want}", path)

    def integer(key, value, lo, hi):
        if type(value) is not int or not lo <= value <= hi:  # bool is not a count; 3.0 is not an integer
            fail(key, value, f"an integer in [{lo}, {hi}]")
        return value

    def int_list(key, value, n_bounds, v_bounds):
        if not isinstance(value, (list, tuple)) or not n_bounds[0] <= len(value) <= n_bounds[1]:
            fail(key, value, f"a list of {n_bounds[0]} to {n_bounds[1]} integers in [{v_bounds[0]}, {v_bounds[1]}]")
        for x in value:
            if type(x) is not int or not v_bounds[0] <= x <= v_bounds[1]:
                fail(key, value, f"a list of {n_bounds[0]} to {n_bounds[1]} integers in [{v_bounds[0]}, {v_bounds[1]}]")
        return list(value)

    if cfg.get("format") != FORMAT:  # these two must be in the config itself, not taken from the defaults
        raise PainterWeightsError(f"config.json format is {_short(cfg.get('format'))}, expected {FORMAT!r}", path)
    if type(cfg.get("version")) is not int or cfg.get("version") != VERSION:
        raise PainterWeightsError(
            f"unsupported GaussPainter weights version {_short(cfg.get('version'))} "
            f"(config value version must be the integer {VERSION})",
            path,
        )
    for key in (
        "timestep",
        "in_channels",
        "latent_channels",
        "vae_channels",
        "layers_per_block",
        "norm_num_groups",
        "close_radius",
    ):
        integer(key, full.get(key), *B[key])
    if type(full.get("use_depth")) is not bool:
        fail("use_depth", full.get("use_depth"), "true or false")
    if "after_head" in cfg and type(cfg["after_head"]) is not bool:
        fail("after_head", cfg["after_head"], "true or false")
    if full.get("skip_base") not in SKIP_BASES:
        fail("skip_base", full.get("skip_base"), " or ".join(repr(x) for x in SKIP_BASES))
    enc = int_list("num_encoder_blocks", full.get("num_encoder_blocks"), B["vae_levels"], B["vae_blocks"])
    dec = int_list("num_decoder_blocks", full.get("num_decoder_blocks"), B["vae_levels"], B["vae_blocks"])
    if len(dec) != len(enc):
        fail("num_decoder_blocks", dec, f"as long as num_encoder_blocks ({len(enc)} levels)")
    ch = int_list("unet_channels", full.get("unet_channels"), B["unet_levels"], B["unet_channels"])
    groups = cast(int, full["norm_num_groups"])
    if any(c % groups or c < 2 * groups for c in ch):  # GroupNorm; one channel per group fails on 1x1 maps
        fail(
            "norm_num_groups",
            groups,
            f"a divisor of every unet_channels entry {ch} that leaves at least 2 channels per group",
        )
    if ch[-1] < MID_ATTENTION_HEAD_DIM:
        fail(
            "unet_channels",
            ch,
            f"a list whose last entry is at least {MID_ATTENTION_HEAD_DIM} (the middle block's "
            f"attention has channels // {MID_ATTENTION_HEAD_DIM} heads)",
        )
    for key in ("out_init_scale", "residual_scale", "residual_scale_visible", "residual_scale_hole"):
        if key not in full:
            continue
        v, (lo, hi) = full[key], B[key]
        if type(v) not in (int, float) or not lo <= v <= hi:
            fail(key, v, f"a number in [{lo}, {hi}]")


def _import():
    try:
        import torch
        from diffusers import AutoencoderTiny, UNet2DModel
    except ImportError as e:  # pragma: no cover - depends on the environment
        from ..errors import BackendUnavailable

        raise BackendUnavailable(
            f"GaussPainter needs torch and diffusers ({e}); pip install -r requirements.txt"
        ) from e
    return torch, AutoencoderTiny, UNet2DModel


def build_modules(cfg: dict):
    """(vae, unet) diffusers modules for a painter config, randomly initialised (no download)."""
    torch, AutoencoderTiny, UNet2DModel = _import()
    n = len(cfg["num_encoder_blocks"])
    c = int(cfg["vae_channels"])
    in_ch = int(cfg["in_channels"]) + (1 if cfg.get("use_depth") else 0)
    vae = AutoencoderTiny(
        in_channels=in_ch,
        out_channels=3,
        encoder_block_out_channels=(c,) * n,
        decoder_block_out_channels=(c,) * len(cfg["num_decoder_blocks"]),
        num_encoder_blocks=tuple(cfg["num_encoder_blocks"]),
        num_decoder_blocks=tuple(cfg["num_decoder_blocks"]),
        latent_channels=int(cfg["latent_channels"]),
    )
    ch = tuple(int(x) for x in cfg["unet_channels"])
    unet = UNet2DModel(
        sample_size=64,
        in_channels=int(cfg["latent_channels"]) + 1,
        out_channels=int(cfg["latent_channels"]),
        block_out_channels=ch,
        layers_per_block=int(cfg["layers_per_block"]),
        down_block_types=("DownBlock2D",) * len(ch),
        up_block_types=("UpBlock2D",) * len(ch),
        norm_num_groups=int(cfg["norm_num_groups"]),
    )
    return vae, unet


def downsample_factor(cfg: dict) -> int:
    return 2 ** (len(cfg["num_encoder_blocks"]) - 1)


def pad_multiple(cfg: dict) -> int:
    """Input sizes must be multiples of this (VAE /f times the UNet's 2^(levels-1))."""
    return downsample_factor(cfg) * 2 ** (len(cfg["unet_channels"]) - 1)


def make_painter(cfg: dict | None = None):
    """A :class:`torch.nn.Module` GaussPainter for ``cfg`` (missing keys from :data:`DEFAULT_CONFIG`)."""
    torch, _, _ = _import()
    import torch.nn.functional as F

    from . import classical

    full = dict(DEFAULT_CONFIG)
    full.update(cfg or {})
    validate_config(full)

    class _GaussPainter(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self, config):
            super().__init__()
            self.config = config
            self.vae, self.unet = build_modules(config)
            self.register_buffer(
                "timestep", torch.tensor([int(config["timestep"])], dtype=torch.long), persistent=False
            )
            self.f = downsample_factor(config)
            s = float(config.get("out_init_scale", 0.1))
            with torch.no_grad():  # start near the identity (small, not zero: zero-init learns nothing)
                self.unet.conv_out.weight.mul_(s)
                self.unet.conv_out.bias.zero_()

        # -- pieces --------------------------------------------------------------------------------------
        def prefill(self, rgb, alpha):
            return classical.fill(rgb, alpha, int(self.config["close_radius"]))

        def cond(self, p, rgb, mask, depth=None):
            x = torch.cat([p, rgb, mask], 1)
            if self.config.get("use_depth"):
                x = torch.cat([x, depth if depth is not None else torch.zeros_like(mask)], 1)
            return x * 2 - 1  # diffusers convention [-1, 1]

        def encode(self, x):
            # bounded latents (TAESD's latent magnitude 3): without this the encoder drifts to huge values,
            # the decoder's tanh clamp saturates and the decoded residual (and its gradient) vanishes
            return torch.tanh(self.vae.encoder(x) / 3) * 3

        def decode(self, z):
            return self.vae.decoder(z)  # [-1, 1]-scaled image

        def step(self, z_in, mask):
            m = F.avg_pool2d(mask, self.f)
            t = self.timestep.expand(z_in.shape[0])
            return z_in + self.unet(torch.cat([z_in, m], 1), t).sample

        # -- forward -------------------------------------------------------------------------------------
        def forward(self, rgb, alpha, depth=None, return_aux: bool = False):
            """rgb [B,3,H,W], alpha [B,1,H,W] in [0,1], H and W multiples of :func:`pad_multiple`.

            The networks run in their own dtype (bfloat16 after ``.to(torch.bfloat16)``); the classical pre-fill and
            the final composition run in the inputs' dtype, so with fp32 inputs a zero residual scale returns the
            pre-fill bit-exact whatever the networks' dtype."""
            mask = 1 - alpha
            p = self.prefill(rgb, alpha)
            net = self.unet.conv_out.weight.dtype
            z_in = self.encode(self.cond(p, rgb, mask, depth).to(net))
            z_hat = self.step(z_in, mask.to(net))
            d = self.decode(torch.cat([z_hat, z_in], 0)).to(rgb.dtype)
            d_hat, d_in = d.chunk(2, 0)
            base = p if self.config.get("skip_base", "prefill") == "prefill" else rgb
            # decoder output is [-1,1]-scaled: difference / 2 in [0,1] units. The residual's scale is a post-hoc
            # least-squares calibration on training frames (1.0 when not calibrated), separately for covered
            # pixels (alpha = 1) and holes (alpha = 0), linear in alpha between them.
            s = float(self.config.get("residual_scale", 1.0))
            s_vis = float(self.config.get("residual_scale_visible", s))
            s_hole = float(self.config.get("residual_scale_hole", s))
            out = base + (d_hat - d_in) * (0.5 * (s_hole + (s_vis - s_hole) * alpha))
            if return_aux:
                return out, {"prefill": p, "z_in": z_in, "z_hat": z_hat, "d_in": d_in, "d_hat": d_hat}
            return out

    return _GaussPainter(full)


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- save / load ----------------------------------------------------------------------------------------------
def save_painter(model, folder: str | os.PathLike, *, extra: dict | None = None, half: bool = False) -> None:
    """Write config.json + vae/ + unet/ (safetensors only) into ``folder``."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    cfg = dict(model.config)
    if extra:
        cfg.update(extra)
    validate_config(cfg, os.path.join(folder, "config.json"))  # never write a config the loader would refuse
    for name in ("vae", "unet"):
        mod = getattr(model, name)
        sub = os.path.join(folder, name)
        if half:
            import copy

            mod = copy.deepcopy(mod).half()
        mod.save_pretrained(sub, safe_serialization=True)
    tmp = os.path.join(folder, "config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(cfg, f, indent=1, sort_keys=True, allow_nan=False)
    os.replace(tmp, os.path.join(folder, "config.json"))


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _open_problem(path: str, e: OSError, missing: str) -> str:
    """What an OSError from stat / open says about ``path``, in words (``missing`` when it does not exist)."""
    if e.errno == errno.ELOOP:
        return f"{os.path.basename(path)} is a symlink loop (too many levels of symbolic links)"
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"{os.path.basename(path)} is a broken symlink (to {target!r}, which does not exist)"
        return missing
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{os.path.basename(path)} is not readable (permission denied)"
    return f"{os.path.basename(path)} cannot be opened ({e.strerror or e})"


def _regular_file(path: str, missing: str, max_bytes: int | None = None) -> os.stat_result:
    """stat ``path`` (following symlinks) and check that it is a regular file (of at most ``max_bytes``);
    raises :class:`PainterWeightsError` saying what it is otherwise."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise PainterWeightsError(_open_problem(path, e, missing), path) from e
    if not stat.S_ISREG(st.st_mode):
        raise PainterWeightsError(f"{os.path.basename(path)} is not a regular file (it is {_kind(st.st_mode)})", path)
    if max_bytes is not None and st.st_size > max_bytes:
        raise PainterWeightsError(
            f"{os.path.basename(path)} is too large ({st.st_size} bytes; a config is at most {max_bytes})", path
        )
    return st


def _read_json(path: str) -> dict:
    missing = "missing config.json"
    _regular_file(path, missing, MAX_CONFIG_BYTES)
    try:
        # O_NONBLOCK: if the file was swapped for a FIFO since the stat, opening it does not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise PainterWeightsError(_open_problem(path, e, missing), path) from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PainterWeightsError(f"config.json is not a regular file (it is {_kind(st.st_mode)})", path)
        try:
            data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as e:
            raise PainterWeightsError(f"config.json is not readable ({e})", path) from e
    if len(data) > MAX_CONFIG_BYTES:
        raise PainterWeightsError(f"config.json is too large (more than {MAX_CONFIG_BYTES} bytes)", path)

    try:
        # NaN / Infinity / 1e999 parse (as Python's json does) and are then reported with their key by
        # validate_config
        out = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise PainterWeightsError("not a readable JSON config (nested too deeply)", path) from None
    except (UnicodeDecodeError, ValueError) as e:
        raise PainterWeightsError(f"not a readable JSON config ({e})", path) from e
    if not isinstance(out, dict):
        raise PainterWeightsError("config is not a JSON object", path)
    return out


def _check_file(path: str) -> None:
    _regular_file(path, f"missing weights file {WEIGHTS_NAME} (only safetensors are accepted)")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise PainterWeightsError(_open_problem(path, e, f"missing weights file {WEIGHTS_NAME}"), path) from e
    if len(head) < 8:
        raise PainterWeightsError("not a safetensors file (shorter than its 8-byte header length)", path)


def _safetensors_shapes(path: str) -> dict:
    """{tensor name: shape} from a safetensors file's header only (nothing is allocated or read beyond it)."""
    _check_file(path)
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises SafetensorError / OSError / ValueError
        raise PainterWeightsError(f"not a valid safetensors file ({type(e).__name__}: {e})", path) from e


def _load_safetensors(path: str) -> dict:
    _check_file(path)
    try:
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    except Exception as e:  # safetensors raises SafetensorError / OSError / ValueError
        raise PainterWeightsError(f"not a valid safetensors file ({type(e).__name__}: {e})", path) from e


def _match(own: dict, have: dict, path: str) -> None:
    """``own``: {name: shape} the config builds; ``have``: {name: shape} in the file."""
    missing = sorted(set(own) - set(have))
    extra = sorted(set(have) - set(own))
    if missing or extra:
        raise PainterWeightsError(
            f"tensor names do not match the config: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}",
            path,
        )
    for k, shape in own.items():
        if tuple(have[k]) != tuple(shape):
            raise PainterWeightsError(f"tensor {k!r} has shape {tuple(have[k])}, config expects {tuple(shape)}", path)


def read_config(folder: str | os.PathLike) -> dict:
    """A weights folder's config.json, read and checked (:func:`validate_config`) without torch; raises
    :class:`PainterWeightsError` naming the file."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise PainterWeightsError("weights folder does not exist", folder)
    cfg = _read_json(os.path.join(folder, "config.json"))
    validate_config(cfg, os.path.join(folder, "config.json"))
    return cfg


def load_painter(folder: str | os.PathLike, device: str = "cpu"):
    """Build a GaussPainter from a weights folder (see module docstring); raises :class:`PainterWeightsError`."""
    torch, _, _ = _import()
    folder = os.fspath(folder)
    # every value's type and range before anything is built (a hostile config would otherwise cost minutes and
    # gigabytes just to build on the meta device, or load fine and restore NaN images)
    cfg = read_config(folder)
    for sub in ("vae", "unet"):
        for bad in ("diffusion_pytorch_model.bin", "pytorch_model.bin"):
            if os.path.exists(os.path.join(folder, sub, bad)) and not os.path.exists(
                os.path.join(folder, sub, WEIGHTS_NAME)
            ):
                raise PainterWeightsError(
                    "pickle weights (.bin) are never loaded; convert them to safetensors",
                    os.path.join(folder, sub, bad),
                )

    def build():
        try:
            return make_painter(cfg)
        except PainterWeightsError:
            raise
        except Exception as e:
            raise PainterWeightsError(
                f"config.json does not describe a buildable model ({type(e).__name__}: {e})",
                os.path.join(folder, "config.json"),
            ) from e

    # Build the config's model on the meta device first (no memory) and check every tensor's name and shape
    # against the files' headers: a corrupt or hostile config.json (say, 16384 channels) is an error before
    # anything is allocated, and the real model is then exactly as large as the weights on disk.
    with torch.device("meta"):
        skeleton = build()
    for sub in ("vae", "unet"):
        path = os.path.join(folder, sub, WEIGHTS_NAME)
        own = {k: tuple(v.shape) for k, v in getattr(skeleton, sub).state_dict().items()}
        _match(own, _safetensors_shapes(path), path)
    del skeleton
    model = build()
    for sub in ("vae", "unet"):
        path = os.path.join(folder, sub, WEIGHTS_NAME)
        sd = _load_safetensors(path)
        mod = getattr(model, sub)
        own = mod.state_dict()  # names and shapes already match the file's header (the skeleton above)
        for k in own:
            if not torch.isfinite(sd[k].float()).all():
                raise PainterWeightsError(f"tensor {k!r} holds NaN or Inf", path)
        mod.load_state_dict({k: sd[k].to(own[k].dtype) for k in own})
    model.eval()
    return model.to(device)
