"""exgs_core.warmup: precompiling the numba kernels, and the stamp that says it was done.

The main test runs two fresh Python processes against an empty ``NUMBA_CACHE_DIR`` (so nothing comes from the
checkout's ``__pycache__`` or an earlier run): the first warms up in a background thread while its main thread
renders and compresses (the add-on's situation: F12 during the warm-up), the second must then report
``is_warm()`` before touching a kernel and render / compress without compiling a single signature (numba's
per-dispatcher cache statistics), with results identical to the first process's. The other tests check the stamp
logic in-process without compiling anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from exgs_core import warmup

ROOT = Path(__file__).resolve().parents[1]
DONUT = ROOT / "tests" / "data" / "donut_sh0_2000.ply"

_COMMON = """
import hashlib, json, os, sys, threading, time
import exgs_core
from exgs_core import warmup
from exgs_core.camera import Camera
from exgs_core.compress import CompressOptions, compress, decompress
from exgs_core.render import render

def counts():
    ks = warmup.kernels()
    return ({n: sum(d.stats.cache_hits.values()) for n, d in ks.items()},
            {n: sum(d.stats.cache_misses.values()) for n, d in ks.items()})

def real_work(path):
    scene = exgs_core.load(path)
    cam = Camera.look_at([0.0, -4.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], 40.0, 160, 120)
    rgb = render(scene, cam, backend="cpu").rgb
    data, _ = compress(scene, CompressOptions(ratio=0.25, views=2, view_size=64))
    back = decompress(data)
    return {"render": hashlib.sha256(rgb.tobytes()).hexdigest(), "exgs": hashlib.sha256(data).hexdigest(),
            "decoded": back.n}

out = {"cache_dir": warmup._cache_dir(), "warm_at_start": warmup.is_warm()}
"""

_FIRST = (
    _COMMON
    + """
events = []
done = threading.Event()
result = {}
def bg():
    try:
        result["timings"] = warmup.warm_up(progress=lambda f, s: events.append((f, s)), cancel=threading.Event())
    except BaseException as e:  # reported below
        result["error"] = repr(e)
    done.set()
th = threading.Thread(target=bg, daemon=True)
th.start()
out["work"] = real_work(sys.argv[1])  # concurrently with the warm-up, as an F12 during it
th.join()
out.update(result, progress=events, warm_after=warmup.is_warm(), stamp=warmup.stamp_path())
print(json.dumps(out))
"""
)

_SECOND = (
    _COMMON
    + """
h0, m0 = counts()
t = time.perf_counter()
out["work"] = real_work(sys.argv[1])
out["work_s"] = time.perf_counter() - t
h1, m1 = counts()
out["compiled"] = {n: m1[n] - m0[n] for n in m1 if m1[n] != m0[n]}
out["loaded"] = sum(h1.values()) - sum(h0.values())
out["again"] = warmup.warm_up()  # already cached: loads only
out["warm"] = warmup.is_warm()
print(json.dumps(out))
"""
)

_THIRD = (
    _COMMON
    + """
# a process that has not warmed up itself reads the stamp only: tamper with it, then with the cache
stamp = warmup.stamp_path()
out["stamp"] = stamp
text = open(stamp).read()
bad = json.loads(text)
bad["key"]["sources"] = "0" * 64
open(stamp, "w").write(json.dumps(bad))
out["warm_bad_key"] = warmup.is_warm()
open(stamp, "w").write(text)
out["warm_restored"] = warmup.is_warm()
index = warmup.kernels()["exgs_core.render.cpu._project"]._cache._cache_file._index_path
os.rename(index, index + ".away")
out["warm_index_gone"] = warmup.is_warm()
os.rename(index + ".away", index)
out["warm_index_back"] = warmup.is_warm()
print(json.dumps(out))
"""
)


def _run(code: str, cache: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env.pop("NUMBA_DISABLE_JIT", None)
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(DONUT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_warm_up_then_a_new_process_compiles_nothing(tmp_path):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    first = _run(_FIRST, cache)
    assert first["cache_dir"].startswith(str(cache))  # numba caches in the empty dir, not the checkout
    assert first["warm_at_start"] is False
    assert "error" not in first, first.get("error")
    t = first["timings"]
    assert set(t) >= {name for name, _ in warmup.STEPS} | {"total", "compiled", "loaded", "stamp"}
    assert t["compiled"] > 0
    assert first["warm_after"] is True
    assert first["stamp"] == t["stamp"] and Path(t["stamp"]).parent == Path(first["cache_dir"])
    fr = [f for f, _ in first["progress"]]
    assert fr == sorted(fr) and fr[0] == 0.0 and first["progress"][-1] == [1.0, "done"]

    second = _run(_SECOND, cache)
    assert second["warm_at_start"] is True
    assert second["compiled"] == {}, f"compiled after warm_up: {second['compiled']}"
    assert second["loaded"] > 0  # the kernels came from numba's cache
    assert second["work"] == first["work"]  # the concurrent warm-up changed no result
    assert second["again"]["compiled"] == 0 and second["warm"] is True

    third = _run(_THIRD, cache)
    assert third["warm_at_start"] is True
    assert third["warm_bad_key"] is False and third["warm_restored"] is True
    assert third["warm_index_gone"] is False and third["warm_index_back"] is True


# ---------------------------------------------------------------------------------------------- in-process


@pytest.fixture
def stamps(tmp_path, monkeypatch):
    """The stamp candidates moved to tmp_path (nothing written next to the real cache), not warm in-process."""
    cands = [str(tmp_path / "cache" / "exgs-warmup.json"), str(tmp_path / "user" / "exgs-warmup.json")]
    monkeypatch.setattr(warmup, "_stamp_candidates", lambda: list(cands))
    monkeypatch.setattr(warmup, "_WARM", False)
    return cands


def test_stamp_is_valid_only_with_this_installs_key(stamps):
    assert warmup.is_warm() is False
    assert warmup.stamp_path() == stamps[0]
    key = warmup._key()
    assert warmup._write_stamp({"key": key, "kernels": []}) == stamps[0]
    assert warmup.is_warm() is True and warmup.stamp_path() == stamps[0]
    for field in ("exgs", "numba", "python", "target", "sources"):
        Path(stamps[0]).write_text(json.dumps({"key": {**key, field: "other"}, "kernels": []}))
        assert warmup.is_warm() is False, field
    Path(stamps[0]).write_text("{not json")
    assert warmup.is_warm() is False


def test_stamp_falls_back_to_the_user_cache_dir(stamps, tmp_path):
    (tmp_path / "cache").write_text("a file where the cache directory should be")  # not writable as a dir
    path = warmup._write_stamp({"key": warmup._key(), "kernels": []})
    assert path == stamps[1]
    assert warmup.is_warm() is True and warmup.stamp_path() == stamps[1]


def test_stamp_needs_the_kernels_cache_index_files(stamps):
    ks = warmup.kernels()
    name = "exgs_core.render.cpu._project"
    assert name in ks and "exgs_core.codec.palette._assign" in ks and "exgs_core.knn._query_py" in ks
    index = Path(ks[name]._cache._cache_file._index_path)
    warmup._write_stamp({"key": warmup._key(), "kernels": [name]})
    assert warmup.is_warm() is index.exists()


def test_sources_digest_follows_the_contents(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__pycache__").mkdir()
    (pkg / "warmup.py").write_text("x = 1\n")
    (pkg / "sub" / "k.py").write_text("def f(): pass\n")
    monkeypatch.setattr(warmup, "__file__", str(pkg / "warmup.py"))
    monkeypatch.setattr(warmup, "_SOURCE_HASH", None)
    d0 = warmup._sources_digest()
    assert warmup._sources_digest() == d0
    (pkg / "__pycache__" / "k.cpython-311.pyc").write_bytes(b"\0")  # caches do not count
    (pkg / "notes.txt").write_text("not python")
    assert warmup._sources_digest() == d0
    (pkg / "sub" / "k.py").write_text("def f(): return 1\n")
    d1 = warmup._sources_digest()
    assert d1 != d0
    (pkg / "sub" / "k2.py").write_text("")
    assert warmup._sources_digest() not in (d0, d1)


def test_is_warm_never_raises(stamps, monkeypatch):
    def boom():
        raise RuntimeError("broken install")

    monkeypatch.setattr(warmup, "_key", boom)
    assert warmup.is_warm() is False


def test_cancel_before_any_step(stamps):
    from exgs_core.prune import Cancelled

    ev = threading.Event()
    ev.set()
    seen = []
    with pytest.raises(Cancelled):
        warmup.warm_up(progress=lambda f, s: seen.append(s), cancel=ev)
    with pytest.raises(Cancelled):
        warmup.warm_up(cancel=lambda: True)
    assert seen == []
    assert not any(Path(p).exists() for p in stamps) and warmup.is_warm() is False


def test_every_module_with_kernels_is_listed():
    """A new numba kernel module must be added to KERNEL_MODULES (and its path to a warm-up step)."""
    import re

    pkg = ROOT / "exgs_core"
    found = set()
    for p in pkg.rglob("*.py"):
        if p.name != "warmup.py" and re.search(
            r"(njit|jit|vectorize|cfunc)\s*\(|@(njit|jit)\b", p.read_text(encoding="utf-8")
        ):
            found.add(".".join(p.relative_to(ROOT).with_suffix("").parts))
    assert found >= {"exgs_core.render.cpu", "exgs_core.codec.palette", "exgs_core.prune.merge", "exgs_core.knn"}
    assert found <= set(warmup.KERNEL_MODULES), found - set(warmup.KERNEL_MODULES)
    ks = warmup.kernels()
    assert {n.rsplit(".", 1)[0] for n in ks} == set(warmup.KERNEL_MODULES)
