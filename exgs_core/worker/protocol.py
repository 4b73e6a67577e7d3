"""The worker's wire format: length-prefixed JSON messages on a byte stream + frames in shared memory.

A message is ``uint32 little-endian length`` followed by that many bytes of UTF-8 JSON. Arrays never travel in
the JSON: a message names them with descriptors ``{"shm": name, "offset": bytes, "shape": [...], "dtype": "<f4"}``
that point into :mod:`multiprocessing.shared_memory` segments. The **client owns every segment** (it creates,
reuses and unlinks them); the worker only attaches, reads its inputs and writes its outputs in place, so a
crashed worker leaks nothing.

Requests: ``{"id": n, "op": "render", "args": {...}, "in": {name: desc}, "out": {name: desc}}``.
Replies:  ``{"id": n, "ok": true, "result": {...}}`` or ``{"id": n, "ok": false, "type": "...", "error": "..."}``.
"""

from __future__ import annotations

import json
import struct
import sys
from multiprocessing import shared_memory

import numpy as np

PROTOCOL_VERSION = 1
_LEN = struct.Struct("<I")
MAX_MESSAGE = 64 << 20  # JSON only (frames go through shared memory)
ALIGN = 64


class ProtocolError(Exception):
    """The other side sent something that is not a valid message, or the stream ended."""


def send_msg(stream, obj: dict) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    stream.write(_LEN.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise EOFError("stream closed")
        buf += chunk
    return bytes(buf)


def recv_msg(stream) -> dict:
    """Next message; EOFError when the stream ended cleanly between messages."""
    head = _read_exact(stream, _LEN.size)
    (n,) = _LEN.unpack(head)
    if n > MAX_MESSAGE:
        raise ProtocolError(f"message of {n} bytes is larger than the {MAX_MESSAGE}-byte limit")
    try:
        obj = json.loads(_read_exact(stream, n).decode("utf-8"))
    except ValueError as e:
        raise ProtocolError(f"not a JSON message: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object")
    return obj


# ---------------------------------------------------------------------------------------------- shared memory
def attach(name: str) -> shared_memory.SharedMemory:
    """Attach to an existing segment without letting this process's resource tracker unlink it at exit."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    shm = shared_memory.SharedMemory(name=name)
    try:  # Python < 3.13 registers attached segments too (bpo-39959): undo that, the client owns it
        from multiprocessing import resource_tracker

        resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001
    except Exception:  # noqa: BLE001 - best effort (e.g. Windows has no tracker for shm)
        pass
    return shm


def view(buf, desc: dict) -> np.ndarray:
    """numpy view of ``desc`` inside the buffer ``buf`` (a SharedMemory's ``.buf``)."""
    dt = np.dtype(desc["dtype"])
    shape = tuple(int(s) for s in desc["shape"])
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    off = int(desc["offset"])
    if off < 0 or off + n > len(buf):
        raise ProtocolError(f"array {shape} {dt} at offset {off} does not fit in segment {desc.get('shm')} "
                            f"({len(buf)} bytes)")
    return np.ndarray(shape, dtype=dt, buffer=buf, offset=off)


class Arena:
    """Client side: one reusable shared-memory segment, carved into the arrays of one request.

    ``layout({"rgb": ((h, w, 3), "<f4"), ...})`` returns descriptors and numpy views; the segment grows (a new
    one replaces it) when a request needs more room. Views are valid until the next ``layout``/``close``.
    """

    def __init__(self, prefix: str = "exgs"):
        self.prefix = prefix
        self.shm: shared_memory.SharedMemory | None = None

    def layout(self, arrays: dict) -> tuple[dict, dict]:
        specs, off = {}, 0
        for name, (shape, dtype) in arrays.items():
            dt = np.dtype(dtype)
            n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            specs[name] = (off, tuple(int(s) for s in shape), dt.str)
            off += (n + ALIGN - 1) // ALIGN * ALIGN
        need = max(off, ALIGN)
        if self.shm is None or self.shm.size < need:
            self.close()
            self.shm = shared_memory.SharedMemory(create=True, size=int(need * 1.25) + 4096)
        descs, views = {}, {}
        for name, (o, shape, dts) in specs.items():
            descs[name] = {"shm": self.shm.name, "offset": o, "shape": list(shape), "dtype": dts}
            views[name] = view(self.shm.buf, descs[name])
        return descs, views

    def close(self) -> None:
        if self.shm is not None:
            shm, self.shm = self.shm, None
            try:
                shm.close()
            except BufferError:  # a view is still alive somewhere: unlink anyway, memory goes with the last view
                pass
            try:
                shm.unlink()
            except FileNotFoundError:
                pass
