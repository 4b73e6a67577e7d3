#!/usr/bin/env python3
"""Train the larger GaussPainter variant on a CUDA machine, from pairs made by our real pipeline (.exgs decodes).

The 4 GB CPU training cache cannot travel to a lent GPU machine (64 MiB per call), so the pairs travel as what
they are made of: the source scenes and their .exgs files (a few hundred KB each). Three steps:

1. ``prepare`` (here, any CPU machine): compress every training scene at several seeded random retention
   ratios / SH cuts and every validation scene at 0.25 / 0.1 / 0.05 with the *default* compressor, write the
   .exgs files and copies of the source scenes into ``--out`` (gitignored ``.gpu_carry/`` by default).
2. ``render`` (on the GPU machine's CPUs, one process per scene): render the full scene (target) and each decoded
   .exgs (input + alpha) from the same views with the CPU renderer, into ``SceneCache`` npz files
   (``exgs_core.painter.data``). Validation scenes get the 8 held-out ``eval`` views (``val_*.npz``) and, for the
   oracle experiment, 16 ``train``-split views (``oracle_*.npz``).
3. ``train`` (CUDA): the whole cache goes to the GPU as uint8, crops are drawn on the GPU, bf16 autocast.
   Time-capped (``--minutes``); then it reports, on the validation frames, PSNR / SSIM of the unrestored render,
   the shipped small checkpoint and the new large one (full residual and holes-only), and runs the *oracle*:
   the large model fine-tuned on each validation scene's own ``train``-split views and tested on its ``eval``
   views - information no shipped model has - which bounds what scene-specific knowledge could add.

    python scripts/gpu_painter.py prepare --out .gpu_carry            # here (2 CPUs: ~5 min)
    python scripts/gpu_painter.py render --carry .gpu_carry --data /tmp/pd --jobs 8
    python scripts/gpu_painter.py train --data /tmp/pd --out $OUT --minutes 5

Everything is seeded; results go to ``OUT/gpu_painter.json`` as each stage finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

LARGE_CONFIG = {"vae_channels": 32, "unet_channels": [48, 96, 192], "layers_per_block": 1, "norm_num_groups": 8}


def _stem(name: str) -> str:
    return os.path.splitext(name)[0].replace(".compressed", "")


# -- 1. prepare (CPU) --------------------------------------------------------------------------------------------
def prepare(out: str, n_ratios: int, seed: int, only=None) -> dict:
    import make_painter_data as mpd

    import exgs_core as ex
    from exgs_core.compress import CompressOptions, compress

    os.makedirs(os.path.join(out, "scenes"), exist_ok=True)
    os.makedirs(os.path.join(out, "exgs"), exist_ok=True)
    man_path = os.path.join(out, "manifest.json")
    man = json.load(open(man_path)) if os.path.isfile(man_path) else {"seed": seed, "scenes": {}}
    for name in only or (mpd.VAL_SCENES + mpd.TRAIN_SCENES):
        if name in man["scenes"]:
            continue
        t0 = time.time()
        val = name in mpd.VAL_SCENES
        rng = np.random.default_rng([seed, sum(map(ord, name))])
        if val:
            ratios, shk = list(mpd.VAL_RATIOS), [mpd.VAL_SH_KEEP] * len(mpd.VAL_RATIOS)
        else:
            ratios = sorted(float(np.exp(rng.uniform(np.log(0.03), np.log(0.5)))) for _ in range(n_ratios))
            shk = [float(rng.choice([0.0, 0.1, 0.3])) for _ in range(n_ratios)]
        src = os.path.join(mpd.SCENE_DIR, name)
        shutil.copy(src, os.path.join(out, "scenes", name))
        scene = ex.load(src)
        files = []
        for i, (r, s) in enumerate(zip(ratios, shk, strict=False)):
            data, rep = compress(scene, CompressOptions(ratio=r, sh_keep=s))
            fn = f"{_stem(name)}_r{i}.exgs"
            with open(os.path.join(out, "exgs", fn), "wb") as f:
                f.write(data)
            files.append({"file": fn, "ratio": r, "sh_keep": s, "bytes": len(data)})
        man["scenes"][name] = {
            "split": "val" if val else "train",
            "files": files,
            "seconds": round(time.time() - t0, 1),
        }
        print(json.dumps({name: man["scenes"][name]}), flush=True)
        with open(man_path + ".tmp", "w") as f:
            json.dump(man, f, indent=1)
        os.replace(man_path + ".tmp", man_path)
    return man


# -- 2. render (CPU, one process per scene) ----------------------------------------------------------------------
def _u8(x):
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _render_scene(job) -> dict:
    carry, data, name, info, size, n_views, threads = job
    import numba

    numba.set_num_threads(threads)
    import exgs_core as ex
    from exgs_core.exgs_format import read_exgs
    from exgs_core.render import render_many
    from exgs_core.views import auto_views

    t0 = time.time()
    clean, _ = ex.load(os.path.join(carry, "scenes", name)).sanitize()
    decoded = [read_exgs(os.path.join(carry, "exgs", f["file"])) for f in info["files"]]
    if info["split"] == "val":
        sets = {
            "val": auto_views(clean, 8, size, size, split="eval"),
            "oracle": auto_views(clean, 16, size, size, split="train"),
        }
    else:
        half = n_views // 2
        sets = {
            "train": auto_views(clean, half, size, size, split="train")
            + auto_views(clean, n_views - half, size, size, split="eval", fov_y_deg=32.0)
        }
    for split, cams in sets.items():
        full = render_many(clean, cams, backend="cpu")
        ins = [render_many(d, cams, backend="cpu") for d in decoded]
        np.savez(
            os.path.join(data, f"{split}_{_stem(name)}.npz"),
            target=np.stack([_u8(r.rgb) for r in full]),
            target_alpha=np.stack([_u8(r.alpha) for r in full]),
            inputs=np.stack([np.stack([_u8(r.rgb) for r in rr]) for rr in ins]),
            alpha=np.stack([np.stack([_u8(r.alpha) for r in rr]) for rr in ins]),
            ratios=np.array([f["ratio"] for f in info["files"]]),
            sh_keep=np.array([f["sh_keep"] for f in info["files"]]),
        )
    return {"scene": name, "seconds": round(time.time() - t0, 1)}


def render(carry: str, data: str, jobs: int, size: int, n_views: int, threads: int) -> list:
    import multiprocessing as mp

    os.makedirs(data, exist_ok=True)
    man = json.load(open(os.path.join(carry, "manifest.json")))
    # biggest scenes first so the pool's tail is short
    todo = sorted(man["scenes"].items(), key=lambda kv: -os.path.getsize(os.path.join(carry, "scenes", kv[0])))
    work = [(carry, data, n, i, size, n_views, threads) for n, i in todo]
    with mp.get_context("spawn").Pool(jobs) as pool:
        res = []
        for r in pool.imap_unordered(_render_scene, work):
            print(json.dumps(r), flush=True)
            res.append(r)
    return res


# -- 3. train (CUDA) ---------------------------------------------------------------------------------------------
class GpuSampler:
    """Crops drawn on the GPU from uint8 caches: random scene/ratio/view, centred on covered pixels 90 % of the
    time, one flip/rotation per batch, per-crop exposure gain (as :class:`exgs_core.painter.data.PairSampler`)."""

    def __init__(self, scenes, crop: int, device, seed: int):
        import torch

        self.torch = torch
        self.crop = crop
        self.g = torch.Generator(device="cpu").manual_seed(seed)
        self.x = [torch.from_numpy(s.inputs).to(device) for s in scenes]  # [R,V,H,W,3]
        self.a = [torch.from_numpy(s.alpha).to(device) for s in scenes]  # [R,V,H,W]
        self.t = [torch.from_numpy(s.target).to(device) for s in scenes]  # [V,H,W,3]
        self.cov = [s._cov for s in scenes]

    def batch(self, b: int):
        torch = self.torch
        g = self.g
        c = self.crop
        xs, as_, ts = [], [], []
        for _ in range(b):
            si = int(torch.randint(len(self.x), (1,), generator=g))
            R, V, H, W, _ = self.x[si].shape
            r, v = int(torch.randint(R, (1,), generator=g)), int(torch.randint(V, (1,), generator=g))
            cov = self.cov[si][v]
            if len(cov) and float(torch.rand(1, generator=g)) < 0.9:
                cy, cx = cov[int(torch.randint(len(cov), (1,), generator=g))]
            else:
                cy, cx = int(torch.randint(H, (1,), generator=g)), int(torch.randint(W, (1,), generator=g))
            y0, x0 = int(np.clip(cy - c // 2, 0, H - c)), int(np.clip(cx - c // 2, 0, W - c))
            xs.append(self.x[si][r, v, y0 : y0 + c, x0 : x0 + c])
            as_.append(self.a[si][r, v, y0 : y0 + c, x0 : x0 + c])
            ts.append(self.t[si][v, y0 : y0 + c, x0 : x0 + c])
        x = torch.stack(xs).permute(0, 3, 1, 2).float() / 255
        a = torch.stack(as_)[:, None].float() / 255
        t = torch.stack(ts).permute(0, 3, 1, 2).float() / 255
        gain = torch.exp(torch.empty(b, 1, 1, 1).uniform_(np.log(0.75), np.log(1.3), generator=g)).to(x.device)
        x, t = (x * gain).clamp(0, 1), (t * gain).clamp(0, 1)
        k = int(torch.randint(4, (1,), generator=g))
        flip = float(torch.rand(1, generator=g)) < 0.5
        out = []
        for z in (x, a, t):
            z = torch.rot90(z, k, (2, 3))
            out.append(z.flip(3) if flip else z)
        return out


def _losses(model, x, a, t, w):
    import torch

    from exgs_core.painter import losses as L

    out, aux = model(x, a, return_aux=True)
    out = out.float()
    terms = {
        "charb": w["charb"] * L.charbonnier(out, t),
        "mse": w["mse"] * ((out - t) ** 2).mean(),
        "msssim": w["msssim"] * (1 - L.ms_ssim(out.clamp(0, 1), t)),
        "grad": w["grad"] * L.gradient_l1(out, t),
    }
    z_star = model.encode(model.cond(t, t, torch.zeros_like(a)))

    def clamp(z):
        return torch.tanh(z / 3) * 3

    terms["latent"] = w["latent"] * (clamp(aux["z_hat"]).float() - clamp(z_star).detach().float()).abs().mean()
    rec = model.decode(z_star).float() * 0.5 + 0.5
    terms["rec"] = w["rec"] * ((rec - t).abs().mean() + (aux["d_in"].float() * 0.5 + 0.5 - aux["prefill"]).abs().mean())
    return sum(terms.values()), terms


def _fit(model, sampler, minutes: float, steps_max: int, batch: int, lr: float, log, tag: str, warmup: int = 100):
    import math

    import torch

    w = {"charb": 0.5, "mse": 10.0, "msssim": 0.1, "grad": 0.1, "latent": 0.05, "rec": 0.05}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    t0 = time.time()
    step, agg = 0, {}
    while step < steps_max:
        frac = max(step / steps_max, (time.time() - t0) / 60 / minutes)
        if frac >= 1:
            break
        cur = lr * min(1.0, (step + 1) / warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for gr in opt.param_groups:
            gr["lr"] = cur
        x, a, t = sampler.batch(batch)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.cuda.is_available()):
            loss, terms = _losses(model, x, a, t, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        for k, v in terms.items():
            agg[k] = agg.get(k, 0.0) + float(v.detach())
        if step % 200 == 0:
            log(
                {
                    "fit": tag,
                    "step": step,
                    "lr": round(cur, 6),
                    "s": round(time.time() - t0, 1),
                    **{k: round(v / 200, 5) for k, v in agg.items()},
                }
            )
            agg = {}
    model.eval()
    return {"steps": step, "seconds": round(time.time() - t0, 1)}


def _evaluate(models: dict, scenes, device) -> dict:
    """Mean per-frame PSNR / SSIM / visible-pixel PSNR per ratio of each model (None = unrestored) on full frames."""
    import torch

    from exgs_core.metrics import psnr, ssim
    from exgs_core.painter.model import pad_multiple

    res: dict = {}
    with torch.no_grad():
        for sc in scenes:
            for r in range(sc.inputs.shape[0]):
                key = f"{sc.ratios[r]:.2f}"
                for v in range(sc.n_views):
                    x, a, t = sc.frame(r, v)
                    vis = a >= 0.5
                    for name, m in models.items():
                        if m is None:
                            y = x
                        else:
                            p = pad_multiple(m.config)
                            H, W = x.shape[:2]
                            xt = torch.from_numpy(x).permute(2, 0, 1)[None].to(device)
                            at = torch.from_numpy(a)[None, None].to(device)
                            ph, pw = (-H) % p, (-W) % p
                            xt = torch.nn.functional.pad(xt, (0, pw, 0, ph))
                            at = torch.nn.functional.pad(at, (0, pw, 0, ph))
                            y = m(xt, at).clamp(0, 1)[0, :, :H, :W].permute(1, 2, 0).float().cpu().numpy()
                        d = res.setdefault(key, {}).setdefault(name, {"psnr": [], "ssim": [], "psnr_vis": []})
                        d["psnr"].append(psnr(y, t))
                        d["ssim"].append(ssim(y, t))
                        d["psnr_vis"].append(psnr(y, t, vis))
    return {
        k: {n: {q: round(float(np.mean(vals)), 4) for q, vals in d.items()} for n, d in ms.items()}
        for k, ms in sorted(res.items())
    }


def train(
    data: str,
    out: str,
    minutes: float,
    oracle_minutes: float,
    batch: int,
    crop: int,
    lr: float,
    seed: int,
    shipped: str | None,
    deadline: float | None = None,
    reserve_s: float = 170.0,
) -> dict:
    import copy

    import torch

    from exgs_core.painter import data as pdata
    from exgs_core.painter.model import load_painter, make_painter, n_params, save_painter

    os.makedirs(out, exist_ok=True)
    results: dict = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def log(rec):
        print(json.dumps(rec), flush=True)
        results.setdefault("log", []).append(rec)
        with open(os.path.join(out, "gpu_painter.json.tmp"), "w") as f:
            json.dump(results, f, indent=1)
        os.replace(os.path.join(out, "gpu_painter.json.tmp"), os.path.join(out, "gpu_painter.json"))

    torch.manual_seed(seed)
    train_sc = [pdata.SceneCache(f) for f in pdata.list_cache(data, "train")]
    val_sc = [pdata.SceneCache(f) for f in pdata.list_cache(data, "val")]
    model = make_painter(LARGE_CONFIG).to(device)
    log(
        {
            "stage": "start",
            "train": [s.name for s in train_sc],
            "val": [s.name for s in val_sc],
            "params_vae": n_params(model.vae),
            "params_unet": n_params(model.unet),
            "config": LARGE_CONFIG,
            "batch": batch,
            "crop": crop,
            "lr": lr,
            "minutes": minutes,
        }
    )
    sampler = GpuSampler(train_sc, crop, device, seed)
    if deadline:  # a wall-clock end for the whole command: keep reserve_s for evaluation and the oracle
        minutes = max(0.5, min(minutes, (deadline - time.time() - reserve_s) / 60))
        log({"stage": "budget", "minutes": round(minutes, 2)})
    fit = _fit(model, sampler, minutes, 10**9, batch, lr, log, "large")
    log({"stage": "trained", **fit})
    save_painter(
        model,
        os.path.join(out, "large"),
        half=True,
        extra={
            "trained_steps": fit["steps"],
            "train_seconds": fit["seconds"],
            "device": results["device"],
            "batch": batch,
            "crop": crop,
        },
    )
    holes = copy.deepcopy(model)
    holes.config.update({"residual_scale_hole": 1.0, "residual_scale_visible": 0.0})
    models = {"unrestored": None, "large": model, "large_holes_only": holes}
    if shipped:
        models["shipped"] = load_painter(shipped, device=device)
    ev = _evaluate(models, val_sc, device)
    log({"stage": "val", "eval": ev})
    # oracle: fine-tune a copy on each validation scene's own train-split views, test on its eval views
    orc = {}
    for vs in val_sc:
        stem = vs.name[len("val_") :]
        path = os.path.join(data, f"oracle_{stem}.npz")
        if not os.path.isfile(path) or oracle_minutes <= 0:
            continue
        m = copy.deepcopy(model)
        smp = GpuSampler([pdata.SceneCache(path)], crop, device, seed + 1)
        f = _fit(m, smp, oracle_minutes, 10**9, batch, lr * 0.3, log, f"oracle {stem}", warmup=20)
        orc[stem] = {"fit": f, "eval": _evaluate({"unrestored": None, "large": model, "oracle": m}, [vs], device)}
        log({"stage": "oracle", "scene": stem, **orc[stem]})
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", default=os.path.join(ROOT, ".gpu_carry"))
    p.add_argument("--ratios", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*")
    r = sub.add_parser("render")
    r.add_argument("--carry", default=os.path.join(ROOT, ".gpu_carry"))
    r.add_argument("--data", required=True)
    r.add_argument("--jobs", type=int, default=8)
    r.add_argument("--threads", type=int, default=2, help="numba threads per scene process")
    r.add_argument("--size", type=int, default=512)
    r.add_argument("--views", type=int, default=32, help="views per training scene")
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=5.0)
    t.add_argument("--oracle-minutes", type=float, default=0.5)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--crop", type=int, default=192)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--shipped", default=os.path.join(ROOT, "exgs_core", "painter", "weights"))
    t.add_argument("--deadline", type=float, default=None, help="unix time by which the command must end")
    a = ap.parse_args(argv)
    if a.cmd == "prepare":
        prepare(a.out, a.ratios, a.seed, a.only)
    elif a.cmd == "render":
        render(a.carry, a.data, a.jobs, a.size, a.views, a.threads)
    else:
        train(a.data, a.out, a.minutes, a.oracle_minutes, a.batch, a.crop, a.lr, a.seed, a.shipped, a.deadline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
