"""The worker's wire format: length-prefixed JSON messages on a byte stream + frames in shared memory.

A message is ``uint32 little-endian length`` followed by that many bytes of UTF-8 JSON. Arrays never travel in
the JSON: a message names them with descriptors ``{"shm": name, "offset": bytes, "shape": [...], "dtype": "<f4"}``
that point into :mod:`multiprocessing.shared_memory` segments. The **client owns every segment** (it creates,
reuses and unlinks them); the worker only attaches, reads its inputs and writes its outputs in place, so a
crashed worker leaks nothing.

Requests: ``{"id": n, "op": "render", "args": {...}, "in": {name: desc}, "out": {name: desc},
"release": [shm names]}`` (``release``: segments the client has unlinked; the worker drops its attachments).
Replies:  ``{"id": n, "ok": true, "result": {...}}`` or ``{"id": n, "ok": false, "type": "...", "error": "..."}``;
a message that arrived whole but cannot be read gets ``{"id": null, "ok": false, "type": "ProtocolError", ...}``.
Replies come in the order of the requests.

Only plain numeric arrays travel (bool, int/uint 8-64, float 16-64; native or little endian): a descriptor
is checked against the segment before any view is made (:func:`view`).
"""

from __future__ import annotations

import json
import re
import struct
import sys
from multiprocessing import shared_memory

import numpy as np

PROTOCOL_VERSION = 1
_LEN = struct.Struct("<I")
MAX_MESSAGE = 64 << 20  # JSON only (frames go through shared memory)
ALIGN = 64
MAX_NDIM = 16
_DTYPE = re.compile(r"[<|=]?([biuf])([1248])")  # numpy type strings: '<f4', '|u1', '|b1', ...
_KIND_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8)}


class ProtocolError(Exception):
    """The other side sent something that is not a valid message, or the stream ended."""


class BadMessage(ProtocolError):
    """A whole message arrived but it is not a valid one (not UTF-8 JSON, not an object, nested too deeply):
    the stream is still in step, so the receiver can answer with an error and go on."""


def encode_msg(obj: dict) -> bytes:
    """The framed bytes of ``obj``; ProtocolError when it cannot be sent (not JSON, too deep, too large)."""
    try:
        data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    except RecursionError:
        raise ProtocolError("the message is nested too deeply to send") from None
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"the message cannot be sent as JSON: {e}") from None
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes is larger than the {MAX_MESSAGE}-byte limit")
    return _LEN.pack(len(data)) + data


def send_msg(stream, obj: dict) -> None:
    stream.write(encode_msg(obj))
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
    data = _read_exact(stream, n)
    try:
        obj = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise BadMessage("the JSON message is nested too deeply") from None
    except ValueError as e:  # also UnicodeDecodeError
        raise BadMessage(f"not a JSON message: {e}") from None
    if not isinstance(obj, dict):
        raise BadMessage("message is not a JSON object")
    return obj


# ---------------------------------------------------------------------------------------------- shared memory
def attach(name: str) -> shared_memory.SharedMemory:
    """Attach to an existing segment without letting this process's resource tracker unlink it at exit."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    shm = shared_memory.SharedMemory(name=name)
    try:  # Python < 3.13 registers attached segments too (bpo-39959): undo that, the client owns it
        from multiprocessing import resource_tracker

        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - best effort (e.g. Windows has no tracker for shm)
        pass
    return shm


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_dtype(text) -> np.dtype:
    """The numpy dtype of a descriptor's ``dtype``: only bool, int/uint of 1-8 bytes and float of 2-8 bytes,
    native or little endian, written as a numpy type string (``'<f4'``). Anything else (objects, which would be
    pointers read from shared memory, records, strings, big endian, ...) is a ProtocolError."""
    m = _DTYPE.fullmatch(text) if isinstance(text, str) else None
    if m is None or int(m.group(2)) not in _KIND_SIZES[m.group(1)]:
        raise ProtocolError(
            f"unsupported array dtype {text!r}: only bool, int, uint and float type strings "
            "such as '<f4' travel through shared memory"
        )
    dt = np.dtype(text)
    if dt.byteorder not in "=|<" or dt.kind not in _KIND_SIZES:  # '<' on a big-endian machine is fine too
        raise ProtocolError(f"unsupported array dtype {text!r}")
    return dt


def view(buf, desc: dict) -> np.ndarray:
    """numpy view of ``desc`` inside the buffer ``buf`` (a SharedMemory's ``.buf``).

    Raises:
        ProtocolError: the descriptor is malformed (see :func:`check_dtype`; shape: a list of at most
            MAX_NDIM non-negative ints; offset: a non-negative int) or the array does not fit in ``buf``.
    """
    if not isinstance(desc, dict):
        raise ProtocolError(f"an array descriptor must be an object, got {type(desc).__name__}")
    dt = check_dtype(desc.get("dtype"))
    shape, off = desc.get("shape"), desc.get("offset")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(s) and s >= 0 for s in shape):
        raise ProtocolError(f"bad array shape {shape!r}: a list of at most {MAX_NDIM} non-negative integers")
    if not isinstance(off, int) or not _is_int(off) or off < 0:
        raise ProtocolError(f"bad array offset {off!r}: a non-negative integer")
    shape = tuple(shape)
    n = dt.itemsize
    for s in shape:  # Python ints: no wrap-around on absurd shapes
        n *= s
    if off + n > len(buf):
        raise ProtocolError(
            f"array {shape} {dt} at offset {off} does not fit in segment {desc.get('shm')} ({len(buf)} bytes)"
        )
    return np.ndarray(shape, dtype=dt, buffer=buf, offset=off)


class Arena:
    """Client side: one reusable shared-memory segment, carved into the arrays of one request.

    ``layout({"rgb": ((h, w, 3), "<f4"), ...})`` returns descriptors and numpy views; the segment grows (a new
    one replaces it) when a request needs more room. Views are valid until the next ``layout``/``close``.
    ``retire()`` gives the segment up when the worker may still write into it (a cancelled request): the next
    ``layout`` uses a new one. ``unlinked`` lists the segments given up since the client last told the worker
    (the ``release`` of the next request), so that the worker does not keep their memory mapped.
    """

    def __init__(self, prefix: str = "exgs"):
        self.prefix = prefix
        self.shm: shared_memory.SharedMemory | None = None
        self._retired: list = []  # unlinked segments whose mapping could not be closed yet (views alive)
        self.unlinked: list[str] = []

    def retire(self) -> str | None:
        """Unlink the current segment and stop using it; returns its name (None when there was none)."""
        shm, self.shm = self.shm, None
        if shm is None:
            return None
        try:
            shm.unlink()
        except FileNotFoundError:
            pass
        self.unlinked.append(shm.name)
        self._retired.append(shm)
        self._close_retired()
        return shm.name

    def _close_retired(self) -> None:
        keep = []
        for shm in self._retired:
            try:
                shm.close()
            except BufferError:  # a view of the last request is still alive: try again next time
                keep.append(shm)
        self._retired = keep

    def layout(self, arrays: dict) -> tuple[dict, dict]:
        self._close_retired()
        specs, off = {}, 0
        for name, (shape, dtype) in arrays.items():
            dt = np.dtype(dtype)
            n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            specs[name] = (off, tuple(int(s) for s in shape), dt.str)
            off += (n + ALIGN - 1) // ALIGN * ALIGN
        need = max(off, ALIGN)
        if self.shm is None or self.shm.size < need:
            self.retire()
            self.shm = shared_memory.SharedMemory(create=True, size=int(need * 1.25) + 4096)
        descs, views = {}, {}
        for name, (o, shape, dts) in specs.items():
            descs[name] = {"shm": self.shm.name, "offset": o, "shape": list(shape), "dtype": dts}
            views[name] = view(self.shm.buf, descs[name])
        return descs, views

    def close(self) -> None:
        """Unlink the segment (memory goes with the last mapping: the worker's, a view still alive here)."""
        self.retire()
        self._close_retired()
        self.unlinked.clear()
