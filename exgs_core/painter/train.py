"""``exgs train-painter``: train GaussPainter on the cached pairs (seeded, resumable, CPU-friendly).

    python -m exgs_core.painter.train --data out/painter_data --run out/painter_runs/main --steps 6000

* Deterministic: the model is initialised from ``--seed`` and batch ``i`` is drawn from ``(seed, i)`` alone.
* Resumable: every ``--ckpt-every`` steps ``RUN/last/`` gets the weights (safetensors), the AdamW state
  (``optimizer.safetensors``) and ``state.json`` (step, best score, config); rerunning the same command
  continues from there. ``RUN/best/`` keeps the weights with the best validation PSNR.
* Logs (stdout and ``RUN/log.jsonl``): loss terms every ``--log-every`` steps, validation PSNR/SSIM of the
  unrestored input and of the model on the held-out ``val_*`` scenes every ``--val-every`` steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np

from . import data as pdata
from .model import DEFAULT_CONFIG, load_painter, make_painter, n_params, save_painter


def _cosine(step: int, total: int, lr: float, warmup: int, floor: float = 0.02) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def save_optimizer(opt, path: str) -> None:
    import torch
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def load_optimizer(opt, path: str) -> None:
    from safetensors.torch import load_file

    flat = load_file(path)
    sd = opt.state_dict()
    state: dict = {}
    for key, v in flat.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def validate(model, val_scenes, views=(0, 4)) -> dict:
    """PSNR / SSIM (all pixels) of input and model output on full val frames, per ratio and overall."""
    import torch

    from ..metrics import psnr, ssim

    model.eval()
    res: dict = {}
    with torch.no_grad():
        for sc in val_scenes:
            for r in range(sc.inputs.shape[0]):
                for v in views:
                    x, a, t = sc.frame(r, v)
                    xt = torch.from_numpy(x).permute(2, 0, 1)[None]
                    at = torch.from_numpy(a)[None, None]
                    y = model(xt, at).clamp(0, 1)[0].permute(1, 2, 0).numpy()
                    key = f"{sc.ratios[r]:.2f}"
                    d = res.setdefault(key, {"psnr_in": [], "psnr": [], "ssim_in": [], "ssim": []})
                    d["psnr_in"].append(psnr(x, t))
                    d["psnr"].append(psnr(y, t))
                    d["ssim_in"].append(ssim(x, t))
                    d["ssim"].append(ssim(y, t))
    model.train()
    out: dict = {k: {m: round(float(np.mean(v)), 4) for m, v in d.items()} for k, d in sorted(res.items())}
    out["mean_psnr"] = round(float(np.mean([d["psnr"] for k, d in out.items()])), 4)
    out["mean_gain"] = round(float(np.mean([d["psnr"] - d["psnr_in"] for k, d in out.items() if k != "mean_psnr"])), 4)
    return out


def calibrate_residual(model, scenes, frames_per_scene: int = 6, seed: int = 1) -> dict:
    """Least-squares scales of the learned residual r = out - I on full *training* frames (never validation):
    ``out = I + r * (s_hole * (1 - alpha) + s_vis * alpha)``, (s_hole, s_vis) minimising |out - T|^2, each clipped to
    [0, 1]; 0 makes the model the identity on those pixels (so it never has to trade visible pixels for holes)."""
    import torch

    rng = np.random.default_rng(seed)
    keys = ("residual_scale", "residual_scale_visible", "residual_scale_hole")
    old = {k: model.config.get(k) for k in keys}
    model.config["residual_scale"] = 1.0
    model.config.pop("residual_scale_visible", None)
    model.config.pop("residual_scale_hole", None)
    ata = np.zeros((2, 2))
    atb = np.zeros(2)
    model.eval()
    with torch.no_grad():
        for sc in scenes:
            for _ in range(frames_per_scene):
                r, v = int(rng.integers(sc.inputs.shape[0])), int(rng.integers(sc.n_views))
                x, a, t = sc.frame(r, v)
                xt = torch.from_numpy(x).permute(2, 0, 1)[None]
                at = torch.from_numpy(a)[None, None]
                res = (model(xt, at)[0].permute(1, 2, 0).numpy() - x).astype(np.float64)
                al = a.astype(np.float64)[..., None]
                f = np.stack([(res * (1 - al)).ravel(), (res * al).ravel()], 1)
                ata += f.T @ f
                atb += f.T @ (t - x).astype(np.float64).ravel()
    for k, v in old.items():
        if v is None:
            model.config.pop(k, None)
        else:
            model.config[k] = v
    raw = np.linalg.lstsq(ata + 1e-12 * np.eye(2), atb, rcond=None)[0]
    s_hole, s_vis = (float(np.clip(x, 0.0, 1.0)) for x in raw)
    return {
        "residual_scale": 1.0,
        "residual_scale_hole": round(s_hole, 4),
        "residual_scale_visible": round(s_vis, 4),
        "frames": frames_per_scene * len(scenes),
        "raw": [round(float(x), 4) for x in raw],
    }


def export(src: str, dst: str, data: str, frames_per_scene: int = 6) -> dict:
    """Copy the weights in ``src`` to ``dst`` with the residual scale calibrated on the training cache."""
    m = load_painter(src)
    scenes = [pdata.SceneCache(f) for f in pdata.list_cache(data, "train")]
    cal = calibrate_residual(m, scenes, frames_per_scene)
    with open(os.path.join(src, "config.json")) as f:
        extra = {k: v for k, v in json.load(f).items() if k in ("trained_steps", "val")}
    for k in ("residual_scale", "residual_scale_hole", "residual_scale_visible"):
        extra[k] = cal[k]
    extra["calibration"] = {
        "frames": cal["frames"],
        "unclipped_hole_visible": cal["raw"],
        "data": "training scenes only",
    }
    m.config.update(extra)
    save_painter(m, dst)
    return extra


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="exgs train-painter", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="out/painter_data", help="cache from scripts/make_painter_data.py")
    ap.add_argument("--run", default="out/painter_runs/main", help="run folder (checkpoints, log)")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=None, help="JSON object overriding model config keys")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--max-minutes", type=float, default=115.0, help="stop (after a checkpoint) past this")
    ap.add_argument("--w-charb", type=float, default=1.0, help="Charbonnier (robust L1) weight")
    ap.add_argument("--w-mse", type=float, default=0.0, help="MSE weight (PSNR-aligned: predicts the conditional mean)")
    ap.add_argument("--w-msssim", type=float, default=0.2)
    ap.add_argument("--w-grad", type=float, default=0.2)
    ap.add_argument("--w-fft", type=float, default=0.05)
    ap.add_argument("--w-latent", type=float, default=0.05)
    ap.add_argument("--w-rec", type=float, default=0.05)
    ap.add_argument("--w-perc", type=float, default=0.02)
    ap.add_argument("--export", default=None, help="after training, copy RUN/best weights to this folder")
    ap.add_argument("--export-only", action="store_true", help="only calibrate + export RUN/best to --export")
    args = ap.parse_args(argv)

    import torch

    if args.export_only:
        torch.set_num_threads(args.threads)
        print(json.dumps(export(os.path.join(args.run, "best"), args.export, args.data)))
        return 0

    from . import losses as L

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    os.makedirs(args.run, exist_ok=True)
    last, best = os.path.join(args.run, "last"), os.path.join(args.run, "best")
    logf = open(os.path.join(args.run, "log.jsonl"), "a")

    def log(rec):
        rec["time"] = time.strftime("%H:%M:%S")
        print(json.dumps(rec), flush=True)
        logf.write(json.dumps(rec) + "\n")
        logf.flush()

    cfg = dict(DEFAULT_CONFIG)
    if args.config:
        cfg.update(json.loads(args.config))
    state = {"step": 0, "best_psnr": -1.0, "best_step": -1, "seconds": 0.0}
    if os.path.isfile(os.path.join(last, "state.json")):
        with open(os.path.join(last, "state.json")) as f:
            state = json.load(f)
        model = load_painter(last)
        model.train()
        cfg = dict(model.config)
        log({"event": "resume", "step": state["step"]})
    else:
        model = make_painter(cfg).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=1e-4)
    if os.path.isfile(os.path.join(last, "optimizer.safetensors")) and state["step"] > 0:
        load_optimizer(opt, os.path.join(last, "optimizer.safetensors"))
    feat = L.RandomFeatures(1234)

    train_files = pdata.list_cache(args.data, "train")
    val_files = pdata.list_cache(args.data, "val")
    if not train_files:
        raise SystemExit(f"no train_*.npz in {args.data}: run scripts/make_painter_data.py first")
    t0 = time.time()
    scenes = [pdata.SceneCache(f) for f in train_files]
    val_scenes = [pdata.SceneCache(f) for f in val_files]
    sampler = pdata.PairSampler(scenes, crop=args.crop, seed=args.seed)
    log(
        {
            "event": "start",
            "train_scenes": [s.name for s in scenes],
            "val_scenes": [s.name for s in val_scenes],
            "params_vae": n_params(model.vae),
            "params_unet": n_params(model.unet),
            "config": cfg,
            "args": vars(args),
            "load_s": round(time.time() - t0, 1),
        }
    )

    def checkpoint(step):
        tmp = last + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_painter(model, tmp)
        save_optimizer(opt, os.path.join(tmp, "optimizer.safetensors"))
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(state, f, indent=1)
        shutil.rmtree(last, ignore_errors=True)
        os.replace(tmp, last)

    run_t0 = time.time() - state.get("seconds", 0.0)
    agg: dict = {}
    step = int(state["step"])
    while step < args.steps:
        # progress = the larger of the step and the wall-clock fraction, so a run cut by --max-minutes still
        # anneals (batches stay a pure function of (seed, step); the LR then depends on machine speed)
        frac_t = (time.time() - run_t0) / 60 / args.max_minutes
        eff = max(step, int(frac_t * args.steps))
        lr = _cosine(eff, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x, a, t = (torch.from_numpy(v) for v in sampler.batch(step, args.batch))
        out, aux = model(x, a, return_aux=True)
        terms = {}
        if args.w_charb:
            terms["charb"] = args.w_charb * L.charbonnier(out, t)
        if args.w_mse:
            terms["mse"] = args.w_mse * ((out - t) ** 2).mean()
        oc = out.clamp(0, 1)
        if args.w_msssim:
            terms["msssim"] = args.w_msssim * (1 - L.ms_ssim(oc, t))
        if args.w_grad:
            terms["grad"] = args.w_grad * L.gradient_l1(out, t)
        if args.w_fft:
            terms["fft"] = args.w_fft * L.fft_l1(out, t)
        if args.w_latent or args.w_rec:
            z_star = model.encode(model.cond(t, t, torch.zeros_like(a)))
            if args.w_latent:
                # compare the latents as the decoder sees them (tanh(z/3)*3): bounded, cannot blow up
                def clamp(z):
                    return torch.tanh(z / 3) * 3

                terms["latent"] = args.w_latent * (clamp(aux["z_hat"]) - clamp(z_star).detach()).abs().mean()
            if args.w_rec:
                rec = model.decode(z_star) * 0.5 + 0.5
                terms["rec"] = args.w_rec * (
                    (rec - t).abs().mean() + (aux["d_in"] * 0.5 + 0.5 - aux["prefill"]).abs().mean()
                )
        if args.w_perc:
            terms["perc"] = args.w_perc * L.perceptual(feat, oc, t)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        for k, v in terms.items():
            agg[k] = agg.get(k, 0.0) + v.item()
        agg["loss"] = agg.get("loss", 0.0) + loss.item()
        agg["gnorm"] = agg.get("gnorm", 0.0) + float(gn)
        agg["n"] = agg.get("n", 0) + 1
        state["step"] = step
        state["seconds"] = round(time.time() - run_t0, 1)
        if step % args.log_every == 0:
            n = agg.pop("n")
            log(
                {
                    "step": step,
                    "lr": round(lr, 6),
                    **{k: round(v / n, 5) for k, v in agg.items()},
                    "s_per_step": round(state["seconds"] / max(1, step), 3),
                    "elapsed_min": round(state["seconds"] / 60, 1),
                }
            )
            agg = {}
        overtime = (time.time() - run_t0) / 60 > args.max_minutes
        if step % args.val_every == 0 or step == args.steps or overtime:
            if val_scenes:
                v = validate(model, val_scenes)
                log({"step": step, "val": v})
                if v["mean_psnr"] > state["best_psnr"]:
                    state["best_psnr"], state["best_step"] = v["mean_psnr"], step
                    tmp = best + ".tmp"
                    shutil.rmtree(tmp, ignore_errors=True)
                    save_painter(model, tmp, extra={"trained_steps": step, "val": v})
                    shutil.rmtree(best, ignore_errors=True)
                    os.replace(tmp, best)
                    log({"event": "best", "step": step, "mean_psnr": v["mean_psnr"]})
        if step % args.ckpt_every == 0 or step == args.steps or overtime:
            checkpoint(step)
        if overtime:
            log({"event": "stop", "reason": "max-minutes", "step": step})
            break
    if args.export and os.path.isdir(best):
        log({"event": "export", "to": args.export, **export(best, args.export, args.data)})
    log({"event": "done", "step": step, "best_step": state["best_step"], "best_psnr": state["best_psnr"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
