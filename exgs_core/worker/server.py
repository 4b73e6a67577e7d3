"""The worker process: serves render / restore / compress requests on its stdin/stdout pipe.

Run as ``python -m exgs_core.worker`` by :class:`exgs_core.worker.client.WorkerClient`; nothing listens on a
network or even a named socket: the only channel is the pipe pair the parent created. Protocol:
:mod:`exgs_core.worker.protocol`. Anything libraries print goes to stderr (the parent's log file): stdout is
re-pointed at stderr before anything else is imported, and the protocol uses a private duplicate of it.

The worker exits on ``quit``, and when its stdin closes (the parent quit or crashed).
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

from . import protocol

SCENE_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def camera_to_dict(cam) -> dict:
    return {"world_to_camera": np.asarray(cam.world_to_camera, np.float64).ravel().tolist(), "fx": float(cam.fx),
            "fy": float(cam.fy), "cx": float(cam.cx), "cy": float(cam.cy), "width": int(cam.width),
            "height": int(cam.height), "near": float(cam.near), "far": float(cam.far), "name": str(cam.name)}


def camera_from_dict(d: dict):
    from ..camera import Camera

    return Camera(np.array(d["world_to_camera"], np.float64).reshape(4, 4), d["fx"], d["fy"], d["cx"], d["cy"],
                  int(d["width"]), int(d["height"]), near=d.get("near", 0.01), far=d.get("far", 1e10),
                  name=d.get("name", ""))


class Server:
    def __init__(self):
        self.segments: dict = {}  # name -> SharedMemory (attached, cached: the client reuses its segments)
        self.scenes: dict = {}  # key -> GaussianScene (the latest few)
        self.prepared: dict = {}  # (key, backend) -> render.prepare()'s result for that scene
        self.restorers: dict = {}  # (weights, device) -> Restorer
        self.delay = float(os.environ.get("EXGS_WORKER_TEST_DELAY", "0") or 0)  # tests: time to kill us

    # ------------------------------------------------------------------ arrays
    def _arr(self, desc: dict) -> np.ndarray:
        name = desc["shm"]
        shm = self.segments.get(name)
        if shm is None:
            if len(self.segments) > 8:  # the client replaced its segment: drop stale attachments
                for old in list(self.segments.values()):
                    try:
                        old.close()
                    except BufferError:
                        pass
                self.segments.clear()
            shm = self.segments[name] = protocol.attach(name)
        return protocol.view(shm.buf, desc)

    def _inputs(self, msg):
        return {k: self._arr(d) for k, d in (msg.get("in") or {}).items()}

    def _outputs(self, msg):
        return {k: self._arr(d) for k, d in (msg.get("out") or {}).items()}

    # ------------------------------------------------------------------ ops
    def op_hello(self, args, ins, outs):
        info = {"protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(), "python": sys.executable,
                "python_version": "%d.%d.%d" % sys.version_info[:3]}
        try:
            import torch

            info["torch"] = torch.__version__
            info["cuda"] = bool(torch.cuda.is_available())
        except Exception as e:  # noqa: BLE001
            info["torch"] = None
            info["torch_error"] = f"{type(e).__name__}: {e}"
            info["cuda"] = False
        from ..render import has_gsplat

        info["gsplat"] = bool(has_gsplat()) if info["torch"] else False
        return info

    def op_echo(self, args, ins, outs):
        for k, dst in outs.items():
            src = ins.get(k)
            if src is not None:
                np.copyto(dst, src)
        return {}

    def op_set_scene(self, args, ins, outs):
        from ..scene import GaussianScene

        s = GaussianScene(*(np.array(ins[f]) for f in SCENE_FIELDS), meta=args.get("meta") or {})
        if len(self.scenes) >= 2:
            self.scenes.pop(next(iter(self.scenes)))
        self.scenes[args["key"]] = s
        for k in list(self.prepared):  # stale: this key's old scene, or a scene no longer kept
            if k[0] == args["key"] or k[0] not in self.scenes:
                del self.prepared[k]
        return {"n": s.n}

    def _scene(self, key):
        s = self.scenes.get(key)
        if s is None:
            raise KeyError(f"unknown scene {key!r} (send it with set_scene first)")
        return s

    def _render(self, args, outs):
        from ..render import prepare, render

        scene = self._scene(args["key"])
        cam = camera_from_dict(args["camera"])
        backend = args.get("backend", "auto")
        pk = (args["key"], backend)
        if pk not in self.prepared:  # converted (CPU) or uploaded (gsplat) once per scene, not per frame
            self.prepared[pk] = prepare(scene, backend)
        res = render(scene, cam, backend=backend, prepared=self.prepared[pk])
        outs["rgb"][...] = res.rgb
        outs["alpha"][...] = res.alpha
        outs["depth"][...] = res.depth
        return res

    def op_render(self, args, ins, outs):
        res = self._render(args, outs)
        return {"backend": res.backend, "n_rendered": int(res.n_rendered)}

    def _restorer(self, args):
        key = (args.get("weights") or None, args.get("device") or None)
        r = self.restorers.get(key)
        if r is None:
            from ..painter.restore import Restorer

            r = self.restorers[key] = Restorer.from_pretrained(key[0], device=key[1])
        return r

    def op_restore(self, args, ins, outs):
        r = self._restorer(args)
        if self.delay:
            time.sleep(self.delay)
        outs["restored"][...] = r.restore(ins["rgb"], ins["alpha"], ins.get("depth"))
        return {"device": str(r.device)}

    def op_render_restore(self, args, ins, outs):
        r = self._restorer(args)
        res = self._render(args, outs)
        if self.delay:
            time.sleep(self.delay)
        outs["restored"][...] = r.restore(res.rgb, res.alpha, res.depth)
        return {"backend": res.backend, "n_rendered": int(res.n_rendered), "device": str(r.device)}

    def op_compress(self, args, ins, outs):
        from .. import load
        from ..compress import CompressOptions, compress

        scene = load(args["src"])
        data, report = compress(scene, CompressOptions(**(args.get("options") or {})))
        tmp = args["dst"] + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, args["dst"])
        return {"bytes": len(data), "report": report.as_dict()}

    # ------------------------------------------------------------------ loop
    def handle(self, msg: dict) -> dict:
        op = msg.get("op")
        fn = getattr(self, f"op_{op}", None)
        if fn is None:
            return {"id": msg.get("id"), "ok": False, "type": "ValueError", "error": f"unknown op {op!r}"}
        try:
            result = fn(msg.get("args") or {}, self._inputs(msg), self._outputs(msg))
            return {"id": msg.get("id"), "ok": True, "result": result}
        except Exception as e:  # noqa: BLE001 - every failure goes back to the client as a typed message
            traceback.print_exc(file=sys.stderr)
            return {"id": msg.get("id"), "ok": False, "type": type(e).__name__, "error": str(e),
                    "exgs_error": _is_exgs_error(e)}

    def close(self):
        for shm in self.segments.values():
            try:
                shm.close()
            except BufferError:
                pass
        self.segments.clear()


def _is_exgs_error(e) -> bool:
    from ..errors import ExgsError

    return isinstance(e, ExgsError)


def main(argv=None) -> int:
    # The protocol owns the original stdout; fd 1 (print, C libraries) now goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    server = Server()
    print(f"exgs worker {os.getpid()} ready ({sys.executable})", file=sys.stderr, flush=True)
    try:
        while True:
            try:
                msg = protocol.recv_msg(inp)
            except EOFError:
                return 0  # the parent went away
            if msg.get("op") == "quit":
                protocol.send_msg(out, {"id": msg.get("id"), "ok": True, "result": {}})
                return 0
            protocol.send_msg(out, server.handle(msg))
    except (BrokenPipeError, protocol.ProtocolError) as e:
        print(f"exgs worker: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        server.close()
