"""GaussPainter inference API (used by the CLI, the demo and the Blender add-on).

    from exgs_core.painter.restore import Restorer
    r = Restorer.from_pretrained()             # the shipped checkpoint in exgs_core/painter/weights/
    r = Restorer.from_pretrained("my/weights") # or another local folder of the same format
    out = r.restore(res.rgb, res.alpha)        # [H,W,3] float32 in [0,1]; or a batch [B,H,W,3] / [B,H,W]
    out = r.restore(res.rgb, res.alpha, res.depth, head=scene_head(scene))  # a decoded .exgs: its head first

A decoded .exgs may carry a *scene head* (:mod:`exgs_core.codec.head`: a small linear filter the compressor
fitted for that scene against the original's renders). ``head=`` runs it first, and the generic network after it
only where the weights ask for that (``after_head``; the shipped ones do not: the head is the restoration of a file
that has one); :func:`scene_head` finds it (None for scenes from other formats, which get the generic painter only).

A restoration that comes out NaN or Inf raises :class:`~exgs_core.painter.model.RestoreError` (an
:class:`~exgs_core.errors.ExgsError`) instead of returning a broken image.

Any image size works: inputs are padded (replicate) to the model's multiple and cropped back; frames larger
than ``tile`` pixels on a side are processed in overlapping tiles blended with a linear ramp. CPU runs in
float32; CUDA runs in float16 by default. Nothing is ever downloaded.

The input must be a render over a **black** background (premultiplied colour, as :func:`exgs_core.render.render`
returns with ``background=None``); for another background render on black, restore, then composite
``out + (1 - alpha_restored) * bg`` yourself (``alpha`` is not changed by restoration).
"""

from __future__ import annotations

import os

import numpy as np

from ..codec.head import SceneHead, apply_head, scene_head
from .model import PainterWeightsError, RestoreError, load_painter, pad_multiple, validate_config

DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")


def _as_float(img: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"{name} must be float in [0, 1] or uint8, got dtype {img.dtype}")
    out = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0)


class Restorer:
    """A loaded GaussPainter ready for inference (``torch.no_grad``, eval mode).

    ``half``: run the networks in bfloat16 (default: on a CUDA device that supports it). Not float16: the shipped
    checkpoint's activations reach ~2e8 inside the UNet's up blocks (measured on the fixture frame), far beyond
    float16's 65504, so float16 turns every pixel into NaN, while bfloat16 has float32's range and stays within
    ~1/255 of float32 (measured max 0.0041 on the fixture). The pre-fill and the final composition always run in
    float32, so covered pixels come back bit-exact either way.
    """

    def __init__(
        self,
        model,
        device: str = "cpu",
        half: bool | None = None,
        tile: int = 2048,
        overlap: int = 64,
        source: str | os.PathLike | None = None,
        after_head: bool | None = None,
    ):
        import torch

        validate_config(model.config, None if source is None else os.fspath(source))
        #: the weights folder (for error messages), when known
        self.source = None if source is None else os.fspath(source)

        self.device = torch.device(device)
        if half is None:
            half = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.half = bool(half)
        self.model = model.to(self.device)
        if self.half:
            self.model = self.model.to(torch.bfloat16)
        self.model.eval()
        self.multiple = pad_multiple(model.config)
        self.tile = max(int(tile), 2 * self.multiple)
        self.overlap = max(0, min(int(overlap), self.tile // 4))
        self.config = dict(model.config)
        #: run the network after a scene head (:meth:`restore`); None = the weights' ``after_head`` (default True)
        self.after_head = bool(self.config.get("after_head", True)) if after_head is None else bool(after_head)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike | None = None,
        *,
        device: str | None = None,
        half: bool | None = None,
        tile: int = 2048,
        threads: int | None = None,
        after_head: bool | None = None,
    ) -> Restorer:
        """Load weights from ``folder`` (default: the shipped checkpoint). ``device``: "cpu", "cuda" or None
        (CUDA when available). ``half``: bfloat16 networks (default: on CUDA with bf16 support only).
        ``threads``: torch CPU threads to use.

        Raises :class:`~exgs_core.painter.model.PainterWeightsError` (an :class:`~exgs_core.errors.ExgsError`)
        naming the file and the problem when the folder is missing, incomplete, not safetensors, or its tensor
        shapes do not match its config.
        """
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        folder = DEFAULT_WEIGHTS if folder is None else os.fspath(folder)
        model = load_painter(folder, device="cpu")
        return cls(model, device=device, half=half, tile=tile, source=folder, after_head=after_head)

    # ------------------------------------------------------------------------------------------------------
    def _run(self, x, a):
        """x [B,3,H,W], a [B,1,H,W] tensors (H, W multiples of self.multiple) -> restored [B,3,H,W] float32."""
        import torch

        with torch.no_grad():  # fp32 in and out; the networks run in bf16 when self.half (see the model's forward)
            y = self.model(x.to(self.device, torch.float32), a.to(self.device, torch.float32))
            bad = ~torch.isfinite(y)
            if bad.any():  # clamp would keep NaN: never hand back a silently broken image
                raise RestoreError(
                    f"the restoration produced NaN or Inf in {int(bad.sum())} of {bad.numel()} values (broken weights "
                    f"or config, or the networks overflowed{' in bfloat16' if self.half else ''})",
                    self.source,
                )
        return y.float().clamp(0, 1)

    def _padded(self, x, a):
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            a = F.pad(a, (0, pw, 0, ph), mode="replicate")
        return self._run(x, a)[..., :h, :w]

    def _tiled(self, x, a):
        import torch

        h, w = x.shape[-2:]
        t, ov = self.tile, self.overlap
        if h <= t and w <= t:
            return self._padded(x, a)
        out = torch.zeros_like(x, dtype=torch.float32, device="cpu")
        wsum = torch.zeros((1, 1, h, w))
        step = t - ov

        def starts(n):
            return [0] if n <= t else sorted(set(list(range(0, n - t, step)) + [n - t]))

        for y0 in starts(h):
            for x0 in starts(w):
                y1, x1 = min(h, y0 + t), min(w, x0 + t)
                part = self._padded(x[..., y0:y1, x0:x1], a[..., y0:y1, x0:x1]).cpu()
                ry = torch.ones(y1 - y0)
                rx = torch.ones(x1 - x0)
                ramp = torch.linspace(1.0 / (ov + 1), 1.0, ov) if ov else torch.ones(0)
                if y0 > 0 and ov:
                    ry[:ov] = ramp
                if y1 < h and ov:
                    ry[-ov:] = ramp.flip(0)
                if x0 > 0 and ov:
                    rx[:ov] = ramp
                if x1 < w and ov:
                    rx[-ov:] = ramp.flip(0)
                wt = (ry[:, None] * rx[None, :])[None, None]
                out[..., y0:y1, x0:x1] += part * wt
                wsum[..., y0:y1, x0:x1] += wt
        return out / wsum.clamp_min(1e-8)

    def restore(
        self,
        rgb: np.ndarray,
        alpha: np.ndarray,
        depth: np.ndarray | None = None,
        *,
        background=None,
        head: SceneHead | None = None,
    ) -> np.ndarray:
        """Restore one frame (``rgb`` [H,W,3], ``alpha`` [H,W]) or a batch ([B,H,W,3], [B,H,W]).

        ``rgb`` float in [0,1] or uint8 (the result has the same dtype); ``alpha`` float in [0,1] or uint8.
        ``depth`` is accepted for API stability and used only by checkpoints trained with depth
        (``config["use_depth"]``; the shipped one is not). A frame whose alpha is zero everywhere (nothing
        rendered) is returned unchanged: there is nothing to restore from.

        ``background`` (float or [3], in [0,1]): the colour the render was composited over
        (``rgb = premult + (1 - alpha) * background``); it is taken out before and put back after restoration.
        None / 0 = black (what the model expects).

        ``head``: the scene head of the decoded .exgs being rendered (:func:`scene_head`), applied to each frame
        first (:func:`~exgs_core.codec.head.apply_head`, which reads ``depth`` [H,W] or [B,H,W] when the head uses
        it); the network runs after it only when :attr:`after_head` is set (the weights' ``after_head``, or the
        constructor's). The shipped weights say False: after a head the network changed PSNR by -0.006 to +0.03 dB
        on the validation scenes, lowered HaarPSI on all 7 files with a head, and cost 400 of 444 ms per 512² frame; a
        least-squares calibration of its residual on the current compressor's output found scales near 0
        (``scripts/calibrate_painter.py``). None: the generic painter only.
        """
        import torch

        f = _Frames(rgb, alpha, depth, background, head)
        x, a = f.x, f.a
        out = x.copy()
        todo = [i for i in range(x.shape[0]) if a[i].max() > 0 and (head is None or self.after_head)]
        if todo:
            xt = torch.from_numpy(x[todo]).permute(0, 3, 1, 2)
            at = torch.from_numpy(a[todo])[:, None]
            y = self._tiled(xt, at).cpu().permute(0, 2, 3, 1).numpy()
            out[todo] = y
        return f.finish(out)

    __call__ = restore


class _Frames:
    """The inputs of a restoration as float32 batches over black, the file's head applied (``x`` [B,H,W,3], ``a``
    [B,H,W]), and :meth:`finish`, which puts the background and the caller's shape and dtype back: the steps every
    restoration shares, with or without the network."""

    def __init__(self, rgb, alpha, depth, background, head):
        self.rgb_in = np.asarray(rgb)
        self.single = self.rgb_in.ndim == 3
        x = _as_float(self.rgb_in, "rgb")
        a = _as_float(alpha, "alpha")
        if self.single:
            x, a = x[None], a[None]
        if x.ndim != 4 or x.shape[-1] != 3 or a.shape != x.shape[:3]:
            raise ValueError(
                f"expected rgb [H,W,3] + alpha [H,W] or [B,H,W,3] + [B,H,W], got {np.shape(rgb)} and {np.shape(alpha)}"
            )
        if x.shape[1] < 1 or x.shape[2] < 1:
            raise ValueError(f"empty image {x.shape[1]}x{x.shape[2]}")
        self.bg = None
        if background is not None:
            bg = np.broadcast_to(np.asarray(background, np.float32), (3,)).astype(np.float32)
            if bg.any():
                self.bg = bg
                x = np.clip(x - (1 - a[..., None]) * bg, 0, 1)
        if head is not None and not head.is_identity:  # the identity head: the frame as it is
            d = None if depth is None else np.asarray(depth, np.float32)
            if d is not None and self.single:
                d = d[None]
            x = np.stack([apply_head(head, x[i], a[i], None if d is None else d[i]) for i in range(x.shape[0])])
            x = np.clip(x, 0.0, 1.0)
        self.x, self.a = x, a

    def finish(self, out: np.ndarray) -> np.ndarray:
        if self.bg is not None:
            out = np.clip(out + (1 - self.a[..., None]) * self.bg, 0, 1)
        out = out[0] if self.single else out
        if self.rgb_in.dtype == np.uint8:
            return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
        return out.astype(np.float32)


def restore_with_head(rgb, alpha, depth=None, *, head: SceneHead, background=None) -> np.ndarray:
    """What :meth:`Restorer.restore` returns for a frame of a file with ``head`` when the network does not run
    after heads (the shipped weights): the head's output, numpy only (no torch, no weights loaded). Same arguments,
    shapes and dtypes as :meth:`Restorer.restore`."""
    f = _Frames(rgb, alpha, depth, background, head)
    return f.finish(f.x.copy())


def weights_run_after_head(folder: str | os.PathLike | None = None) -> bool:
    """The ``after_head`` of a weights folder's config (default: the shipped weights), read and validated without
    torch; raises :class:`~exgs_core.painter.model.PainterWeightsError` for a missing or bad config."""
    from .model import read_config

    return bool(read_config(DEFAULT_WEIGHTS if folder is None else folder).get("after_head", True))


def head_alone(head: SceneHead | None, weights: str | os.PathLike | None = None) -> bool:
    """True when a frame with scene head ``head`` is restored by the head alone with the weights folder
    ``weights`` (default: the shipped ones), whose config says the network does not run after heads: then
    :func:`restore_with_head` is the whole restoration (numpy; no torch, no worker process). False without a head,
    and for a folder whose config is missing or bad (loading the network then reports that, naming the file)."""
    if head is None:
        return False
    from .model import PainterWeightsError

    try:
        return not weights_run_after_head(weights)
    except PainterWeightsError:
        return False


def restored_by(head: SceneHead | None, after_head: bool) -> str:
    """What restores a frame, in words for the user (``exgs render/eval --restore``, the demo): ``head`` is the
    scene's head (None: not an .exgs; an identity head: an .exgs without one, :func:`~exgs_core.codec.head.
    restoration_head`), ``after_head`` whether the weights run the network after heads."""
    if head is None:
        return "GaussPainter"
    if head.is_identity:
        return (
            "GaussPainter (the .exgs file has no scene head)"
            if after_head
            else "nothing (the .exgs file has no scene head, and GaussPainter does not run on .exgs renders)"
        )
    return "the file's scene head + GaussPainter" if after_head else "the file's scene head"


class LazyRestorer:
    """A :class:`Restorer` that loads its network only when a frame needs it: frames of a file with a scene head
    are restored by the head alone when the weights do not run after heads (:func:`restore_with_head`), so a
    decoded .exgs with a head restores without torch installed. ``weights`` and ``kwargs`` as for
    :meth:`Restorer.from_pretrained`; the weights' config is checked at once."""

    def __init__(self, weights: str | os.PathLike | None = None, **kwargs):
        self.weights, self.kwargs = weights, kwargs
        self.after_head = weights_run_after_head(weights)
        self._restorer: Restorer | None = None

    def restore(self, rgb, alpha, depth=None, *, background=None, head: SceneHead | None = None) -> np.ndarray:
        if head is not None and not self.after_head:
            return restore_with_head(rgb, alpha, depth, head=head, background=background)
        if self._restorer is None:
            self._restorer = Restorer.from_pretrained(self.weights, **self.kwargs)
        return self._restorer.restore(rgb, alpha, depth, background=background, head=head)

    __call__ = restore


def restore(
    rgb: np.ndarray,
    alpha: np.ndarray,
    depth: np.ndarray | None = None,
    *,
    weights: str | os.PathLike | None = None,
    device: str | None = None,
    head: SceneHead | None = None,
) -> np.ndarray:
    """One-shot convenience: load (cached per weights folder / device) and restore (``head``: see
    :meth:`Restorer.restore`)."""
    key = (os.fspath(weights) if weights else DEFAULT_WEIGHTS, device)
    r = _CACHE.get(key)
    if r is None:
        r = _CACHE[key] = Restorer.from_pretrained(weights, device=device)
    return r.restore(rgb, alpha, depth, head=head)


_CACHE: dict = {}


def side_by_side(images, labels=None, gap: int = 4) -> np.ndarray:
    """One uint8 [H, sum(W)+gaps, 3] image of equally tall frames (float [0,1] or uint8), each with an
    optional label drawn in its top-left corner (PIL's default font), e.g. original | compressed | restored."""
    from PIL import Image, ImageDraw

    tiles = []
    for i, im in enumerate(images):
        im = np.asarray(im)
        u8 = im if im.dtype == np.uint8 else (np.clip(im, 0, 1) * 255 + 0.5).astype(np.uint8)
        if labels and i < len(labels) and labels[i]:
            pil = Image.fromarray(u8)
            dr = ImageDraw.Draw(pil)
            x0, y0, x1, y1 = dr.textbbox((6, 4), labels[i])
            dr.rectangle((x0 - 3, y0 - 2, x1 + 3, y1 + 2), fill=(0, 0, 0))
            dr.text((6, 4), labels[i], fill=(255, 255, 255))
            u8 = np.asarray(pil)
        tiles.append(u8)
        if i < len(images) - 1:
            tiles.append(np.full((u8.shape[0], gap, 3), 255, np.uint8))
    return np.concatenate(tiles, 1)


__all__ = [
    "Restorer",
    "LazyRestorer",
    "restore_with_head",
    "weights_run_after_head",
    "restore",
    "PainterWeightsError",
    "RestoreError",
    "DEFAULT_WEIGHTS",
    "side_by_side",
    "SceneHead",
    "apply_head",
    "scene_head",
]
