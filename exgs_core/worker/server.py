"""The worker process: serves render / restore / compress requests on its stdin/stdout pipe.

Run as ``python -m exgs_core.worker`` by :class:`exgs_core.worker.client.WorkerClient`; nothing listens on a
network or even a named socket: the only channel is the pipe pair the parent created. Protocol:
:mod:`exgs_core.worker.protocol`. Anything libraries print goes to stderr (the parent's log file): stdout is
re-pointed at stderr before anything else is imported, and the protocol uses a private duplicate of it.

The worker exits on ``quit``, and when its stdin closes (the parent quit or crashed).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import traceback

import numpy as np

from . import protocol

SCENE_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")
MAX_SEGMENTS = 8  # attachments kept; more means the client moved on to new segments


def scene_digest(arrays: dict, antialiased: bool) -> str:
    """Content hash of a scene's arrays (``SCENE_FIELDS`` -> array) and of what else the worker renders with.
    The client keys scenes by it (:func:`exgs_core.worker.client.scene_key`); the worker checks an upload by it."""
    h = hashlib.blake2b(digest_size=16)
    for f in SCENE_FIELDS:
        a = np.ascontiguousarray(arrays[f])
        h.update(str(a.shape).encode())
        h.update(memoryview(a).cast("B"))  # type: ignore[arg-type]
    h.update(b"antialiased=%d" % bool(antialiased))
    return h.hexdigest()


def camera_to_dict(cam) -> dict:
    return {
        "world_to_camera": np.asarray(cam.world_to_camera, np.float64).ravel().tolist(),
        "fx": float(cam.fx),
        "fy": float(cam.fy),
        "cx": float(cam.cx),
        "cy": float(cam.cy),
        "width": int(cam.width),
        "height": int(cam.height),
        "near": float(cam.near),
        "far": float(cam.far),
        "name": str(cam.name),
    }


def camera_from_dict(d: dict):
    from ..camera import Camera

    return Camera(
        np.array(d["world_to_camera"], np.float64).reshape(4, 4),
        d["fx"],
        d["fy"],
        d["cx"],
        d["cy"],
        int(d["width"]),
        int(d["height"]),
        near=d.get("near", 0.01),
        far=d.get("far", 1e10),
        name=d.get("name", ""),
    )


class Server:
    def __init__(self):
        self.segments: dict = {}  # name -> SharedMemory (attached, cached: the client reuses its segments)
        self.scenes: dict = {}  # key -> GaussianScene (the latest few)
        self.prepared: dict = {}  # (key, backend) -> render.prepare()'s result for that scene
        self.restorers: dict = {}  # (weights, device) -> Restorer
        self.delay = float(os.environ.get("EXGS_WORKER_TEST_DELAY", "0") or 0)  # tests: time to kill us

    # ------------------------------------------------------------------ arrays
    def _arr(self, desc: dict) -> np.ndarray:
        name = desc.get("shm") if isinstance(desc, dict) else None
        if not isinstance(name, str) or not name or len(name) > 250 or "/" in name or "\\" in name:
            raise protocol.ProtocolError(f"bad shared-memory segment name {name!r}")
        protocol.check_dtype(desc.get("dtype"))  # before attaching anything
        shm = self.segments.get(name)
        if shm is None:
            if len(self.segments) >= MAX_SEGMENTS:  # the client replaced its segment: drop stale attachments
                self.release(list(self.segments))
            shm = self.segments[name] = protocol.attach(name)
        return protocol.view(shm.buf, desc)

    def release(self, names) -> None:
        """Drop the attachments to segments the client has unlinked (their memory goes with the last mapping)."""
        for name in names:
            shm = self.segments.pop(name, None) if isinstance(name, str) else None
            if shm is not None:
                try:
                    shm.close()
                except BufferError:  # a view is still alive: the mapping goes when it does
                    pass

    def _descs(self, msg, part):
        d = msg.get(part) or {}
        if not isinstance(d, dict):
            raise protocol.ProtocolError(f"'{part}' must be an object of array descriptors")
        return {k: self._arr(v) for k, v in d.items()}

    def _inputs(self, msg):
        return self._descs(msg, "in")

    def _outputs(self, msg):
        return self._descs(msg, "out")

    # ------------------------------------------------------------------ ops
    def op_hello(self, args, ins, outs):
        info = {
            "protocol": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "python": sys.executable,
            "python_version": "{}.{}.{}".format(*sys.version_info[:3]),
        }
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
        from ..errors import SceneError
        from ..scene import GaussianScene

        key = args["key"]
        self.scenes.pop(key, None)  # whatever happens below, the key no longer means the old scene
        for k in list(self.prepared):  # stale: this key's old scene, or a scene no longer kept
            if k[0] == key or k[0] not in self.scenes:
                del self.prepared[k]
        arrays = {f: np.array(ins[f]) for f in SCENE_FIELDS}  # copies: the client reuses its memory
        meta = args.get("meta") or {}
        if args.get("digest") and scene_digest(arrays, meta.get("antialiased", False)) != args["digest"]:
            raise SceneError("the scene arrived corrupted (its content does not match its digest); not kept")
        s = GaussianScene(*(arrays[f] for f in SCENE_FIELDS), antialiased=bool(meta.get("antialiased", False)))
        if len(self.scenes) >= 2:
            self.scenes.pop(next(iter(self.scenes)))
            for k in [k for k in self.prepared if k[0] not in self.scenes]:
                del self.prepared[k]
        self.scenes[key] = s
        return {"n": s.n}

    def _scene(self, key):
        s = self.scenes.get(key)
        if s is None:
            raise KeyError(f"unknown scene {key!r} (send it with set_scene first)")
        return s

    def _render(self, args, outs, delay: float = 0.0):
        from ..render import prepare, render

        scene = self._scene(args["key"])
        cam = camera_from_dict(args["camera"])
        backend = args.get("backend", "auto")
        pk = (args["key"], backend)
        if pk not in self.prepared:  # converted (CPU) or uploaded (gsplat) once per scene, not per frame
            self.prepared[pk] = prepare(scene, backend)
        res = render(scene, cam, backend=backend, prepared=self.prepared[pk])
        if delay:  # tests: the frame is written late, as after a long render
            time.sleep(delay)
        outs["rgb"][...] = res.rgb
        outs["alpha"][...] = res.alpha
        outs["depth"][...] = res.depth
        return res

    def op_render(self, args, ins, outs):
        res = self._render(args, outs, self.delay)
        return {"backend": res.backend, "n_rendered": int(res.n_rendered)}

    def _restorer(self, args):
        key = (args.get("weights") or None, args.get("device") or None)
        r = self.restorers.get(key)
        if r is None:
            from ..painter.restore import Restorer

            r = self.restorers[key] = Restorer.from_pretrained(key[0], device=key[1])
        return r

    @staticmethod
    def _head(ins):
        """The scene head sent with a restore request (input ``head``: uint8 bytes of ``SceneHead.to_bytes``), or
        None. A bad one is a FormatError naming the section, as in a file."""
        raw = ins.get("head")
        if raw is None:
            return None
        from ..codec.head import SceneHead

        return SceneHead.from_bytes(np.asarray(raw, np.uint8).tobytes())

    def op_restore(self, args, ins, outs):
        r = self._restorer(args)
        if self.delay:
            time.sleep(self.delay)
        outs["restored"][...] = r.restore(ins["rgb"], ins["alpha"], ins.get("depth"), head=self._head(ins))
        return {"device": str(r.device)}

    def op_render_restore(self, args, ins, outs):
        r = self._restorer(args)
        res = self._render(args, outs)
        if self.delay:
            time.sleep(self.delay)
        outs["restored"][...] = r.restore(res.rgb, res.alpha, res.depth, head=self._head(ins))
        return {"backend": res.backend, "n_rendered": int(res.n_rendered), "device": str(r.device)}

    def op_compress(self, args, ins, outs):
        """``src`` (any readable splat file) -> ``dst`` (.exgs), written as the CLI writes it: the output path
        checked before the work, then a private temporary file beside it, fsync, rename."""
        from ..compress import CompressOptions, compress
        from ..errors import ExgsError
        from ..exgs_format import write_exgs
        from ..io import load
        from ..io.atomic import check_output_path

        src, dst, opts = args.get("src"), args.get("dst"), args.get("options") or {}
        if not (isinstance(src, str) and src and isinstance(dst, str) and dst):
            raise ExgsError("compress needs the 'src' and 'dst' file paths")
        if not isinstance(opts, dict):
            raise ExgsError(f"compress options must be an object, got {type(opts).__name__}")
        check_output_path(dst)  # before minutes of work, not after
        try:
            options = CompressOptions(**opts)
        except (TypeError, ValueError) as e:
            raise ExgsError(f"invalid compress options: {e}") from None
        scene = load(src)
        data, report = compress(scene, options)
        write_exgs(dst, data)
        return {"bytes": len(data), "report": report.as_dict()}

    # ------------------------------------------------------------------ loop
    def handle(self, msg: dict) -> dict:
        rid = msg.get("id")
        if not (rid is None or isinstance(rid, int)):
            rid = None
        rel = msg.get("release")
        if isinstance(rel, list):
            self.release(rel)
        op = msg.get("op")
        fn = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        if fn is None:
            return {"id": rid, "ok": False, "type": "ValueError", "error": f"unknown op {op!r}"}
        try:
            args = msg.get("args") or {}
            if not isinstance(args, dict):
                raise protocol.ProtocolError("'args' must be an object")
            result = fn(args, self._inputs(msg), self._outputs(msg))
            return {"id": rid, "ok": True, "result": result}
        except Exception as e:  # noqa: BLE001 - every failure goes back to the client as a typed message
            traceback.print_exc(file=sys.stderr)
            return error_reply(rid, e)

    def close(self):
        for shm in self.segments.values():
            try:
                shm.close()
            except BufferError:
                pass
        self.segments.clear()


def error_reply(rid, e: BaseException) -> dict:
    """The reply for a request that raised ``e``; an ExgsError keeps its path and detail so that the client
    can raise the same kind of error (see ``exgs_core.worker.client``)."""
    from ..errors import ExgsError

    reply = {"id": rid, "ok": False, "type": type(e).__name__, "error": str(e), "exgs_error": isinstance(e, ExgsError)}
    if isinstance(e, ExgsError):
        reply.update(path=e.path, detail=e.detail)
        for k in ("offset", "field"):
            v = getattr(e, k, None)
            if v is None or isinstance(v, (int, str)):
                reply[k] = v
    return reply


def _send_reply(out, reply: dict) -> None:
    try:
        data = protocol.encode_msg(reply)
    except protocol.ProtocolError as e:  # a result that is not JSON: still one reply, in step
        data = protocol.encode_msg(error_reply(reply.get("id"), e))
    out.write(data)
    out.flush()


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
            except protocol.BadMessage as e:  # read whole, so the stream is still in step: answer and go on
                print(f"exgs worker: {e}", file=sys.stderr, flush=True)
                _send_reply(
                    out, {"id": None, "ok": False, "type": "ProtocolError", "error": str(e), "exgs_error": False}
                )
                continue
            if msg.get("op") == "quit":
                _send_reply(out, {"id": msg.get("id"), "ok": True, "result": {}})
                return 0
            _send_reply(out, server.handle(msg))
    except (BrokenPipeError, protocol.ProtocolError) as e:
        print(f"exgs worker: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        server.close()
