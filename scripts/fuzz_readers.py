"""Fuzz the scene readers (PLY binary/ASCII, .splat, SPZ v2 gzip / v4 zstd, .compressed.ply, SOG) through
``exgs_core.load``, outside the test suite.

    .venv/bin/python scripts/fuzz_readers.py --count 20000 [--seed 0] [--json out.json]

Every case takes a reader fixture (tests/data/*.ply, *.splat, *.spz, *.sog) and applies one to four mutations:
byte overwrites anywhere, overwrites in the first 2 KB (headers, sizes, gzip/zip headers), truncation, insertion,
deletion, a 32-bit field in the first 64 bytes set to an extreme value (0, 2^24, 2^31 - 1, 2^32 - 1), or, in a PLY
header, a number replaced by a huge one. The mutated file is written under its fixture's name (so the extension
still suggests the format) and loaded with content detection, then ``validate()``-ed.

Outcomes: ``error`` (an ``ExgsError``, which names the file), ``loaded`` (a scene; NaN/Inf may be in it, which
``validate()`` reports: readers never repair silently), and ``other``: any other exception or a case slower than
``--timeout`` seconds (a hang). The address space is capped (``--mem-gb``), so an allocation sized by a corrupt
count fails loudly instead of swapping. The exit status is 1 when ``other`` is not 0.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exgs_core import load  # noqa: E402
from exgs_core.errors import ExgsError  # noqa: E402

DATA = REPO / "tests" / "data"
EXTREMES = (0, 1 << 24, (1 << 31) - 1, (1 << 32) - 1)


class Timeout(Exception):
    pass


def _alarm(*_):
    raise Timeout()


def mutate(raw: bytes, rng: random.Random) -> bytes:
    b = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        k = rng.random()
        if k < 0.25:
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif k < 0.45:
            h = min(len(b), 2048)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(h)] = rng.randrange(256)
        elif k < 0.55:
            del b[rng.randrange(len(b)) :]
        elif k < 0.65:
            p = rng.randrange(len(b) + 1)
            b[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif k < 0.75:
            p = rng.randrange(len(b))
            del b[p : p + rng.randint(1, 64)]
        elif k < 0.9 and len(b) >= 64:
            p = rng.randrange(0, 61)
            b[p : p + 4] = rng.choice(EXTREMES).to_bytes(4, "little")
        elif b.startswith(b"ply"):
            end = b.find(b"end_header")
            nums = [m for m in re.finditer(rb"\d+", bytes(b[: max(end, 0)]))]
            if nums:
                m = rng.choice(nums)
                b[m.start() : m.end()] = str(rng.choice((0, 1, 10**9, 10**15, 2**63))).encode()
    return bytes(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--mem-gb", type=float, default=8.0, help="address-space cap for this process")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    cap = int(args.mem_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGALRM, _alarm)
    fixtures = sorted(p for p in DATA.iterdir() if p.suffix in (".ply", ".splat", ".spz", ".sog"))
    raws = {p.name: p.read_bytes() for p in fixtures}
    rng = random.Random(args.seed)
    out = Counter()
    per_fixture: dict = {}
    examples = []
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.count):
            name = fixtures[i % len(fixtures)].name
            data = mutate(raws[name], rng)
            path = Path(tmp) / name
            path.write_bytes(data)
            t = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, args.timeout)
            try:
                load(path).validate()
                kind = "loaded"
            except ExgsError:
                kind = "error"
            except Timeout:
                kind = "other"
                examples.append({"case": i, "fixture": name, "what": f"slower than {args.timeout} s"})
            except Exception as e:  # noqa: BLE001 - anything else is the finding
                kind = "other"
                examples.append(
                    {
                        "case": i,
                        "fixture": name,
                        "what": f"{type(e).__name__}: {e}"[:300],
                        "trace": traceback.format_exc()[-800:],
                    }
                )
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            times.append(time.perf_counter() - t)
            out[kind] += 1
            per_fixture.setdefault(name, Counter())[kind] += 1
    res = {
        "cases": args.count,
        "seed": args.seed,
        **{k: out[k] for k in ("error", "loaded", "other")},
        "max_ms": round(1000 * max(times), 1),
        "mean_ms": round(1000 * sum(times) / len(times), 2),
        "per_fixture": {k: dict(v) for k, v in per_fixture.items()},
        "examples": examples[:20],
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 1 if out["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
