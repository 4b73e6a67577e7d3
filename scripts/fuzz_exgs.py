"""Fuzz the .exgs decoder with mutated and truncated golden files, outside the test suite.

    .venv/bin/python scripts/fuzz_exgs.py --count 100000 [--seed 0] [--json out.json]

Every case takes a golden file (tests/data/golden/*.exgs) and applies one to four mutations. Half the cases
mutate the raw bytes (bit flips, byte overwrites, truncations, insertions, deletions, 32/64-bit length-field
tampering in the fixed header and the section table), which the CRCs mostly catch; the other half mutate behind
valid checksums (a section payload, the JSON header text, a JSON value, or a section-table field, then the CRCs
are recomputed), so the mutation reaches zstd, the JSON schema and the semantic checks.

Outcomes: ``format_error`` (a FormatError that names a field), ``decoded`` (a scene whose arrays are all finite),
and ``other``: any other exception, a FormatError without a field, a decoded scene with NaN/Inf, or a case
slower than ``--timeout`` seconds (a hang). The exit status is 1 when ``other`` is not 0. Reports the counts, the
maximum and mean time per case, and up to 20 examples of ``other``.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from exgs_core import exgs_format as F  # noqa: E402
from exgs_core.errors import FormatError  # noqa: E402

FIXED = struct.Struct("<4sHHIIIHHII")
ENTRY = struct.Struct("<4sBBBBQQII")


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def split(data: bytes):
    _, version, r0, flags, n, jlen, nsec, r1, _, r2 = FIXED.unpack_from(data, 0)
    hjson = data[32 : 32 + jlen]
    entries = []
    pos = 32 + jlen + 32 * nsec
    for i in range(nsec):
        f = list(ENTRY.unpack_from(data, 32 + jlen + 32 * i))
        entries.append({"f": f, "payload": data[pos : pos + f[5]]})
        pos += f[5]
    return [version, r0, flags, n, r1, r2], hjson, entries


def pack(fixed, hjson: bytes, entries) -> bytes:
    version, r0, flags, n, r1, r2 = fixed
    table = b""
    for e in entries:
        f = list(e["f"])
        f[5] = len(e["payload"])
        f[7] = zlib.crc32(e["payload"])
        table += ENTRY.pack(*f)
    head24 = FIXED.pack(b"EXGS", version, r0, flags, n, len(hjson), len(entries), r1, 0, 0)[:24]
    crc = zlib.crc32(head24 + hjson + table)
    return head24 + struct.pack("<II", crc, r2) + hjson + table + b"".join(e["payload"] for e in entries)


def mutate_bytes(b: bytearray, rnd: random.Random, desc: list) -> None:
    if not b:
        b.extend(bytes([rnd.randrange(256)]))
        desc.append("grow-empty")
        return
    kind = rnd.choice(("flip", "flip", "byte", "cut", "insert", "delete", "u32", "u64", "dup"))
    pos = rnd.randrange(len(b))
    if kind == "flip":
        b[pos] ^= 1 << rnd.randrange(8)
    elif kind == "byte":
        b[pos] = rnd.randrange(256)
    elif kind == "cut":
        del b[pos:]
    elif kind == "insert":
        b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.choice((1, 1, 2, 7, 32))))
    elif kind == "delete":
        del b[pos : pos + rnd.choice((1, 2, 8, 100))]
    elif kind in ("u32", "u64"):
        size = 4 if kind == "u32" else 8
        val = rnd.choice((0, 1, 2**8 * size - 1, 2 ** (8 * size) - 1, 2**31, rnd.randrange(2 ** (8 * size))))
        b[pos : pos + size] = val.to_bytes(size, "little")[: len(b) - pos]
    elif kind == "dup":
        end = min(len(b), pos + rnd.randrange(1, 64))
        b[pos:pos] = b[pos:end]
    desc.append(f"{kind}@{pos}")


def raw_case(data: bytes, rnd: random.Random, desc: list) -> bytes:
    b = bytearray(data)
    if rnd.random() < 0.3 and len(b) >= 32:  # tamper with a length/count field of the headers
        jlen = FIXED.unpack_from(data, 0)[5]
        nsec = FIXED.unpack_from(data, 0)[6]
        choices = [(12, 4), (16, 4), (20, 2)] + [(32 + jlen + 32 * i + o, 8) for i in range(nsec) for o in (8, 16)]
        off, size = rnd.choice(choices)
        if off + size <= len(b):
            old = int.from_bytes(b[off : off + size], "little")
            new = rnd.choice(
                (0, old + 1, max(old - 1, 0), old * 2, 2 ** (8 * size) - 1, rnd.randrange(2 ** (8 * size)))
            )
            b[off : off + size] = (new % 2 ** (8 * size)).to_bytes(size, "little")
            desc.append(f"len@{off}:{old}->{new}")
    for _ in range(rnd.randint(1, 4)):
        mutate_bytes(b, rnd, desc)
    return bytes(b)


def checksum_case(data: bytes, rnd: random.Random, desc: list) -> bytes:
    fixed, hjson, entries = split(data)
    where = rnd.choice(("payload", "payload", "json_text", "json_value", "table", "fixed"))
    desc.append(where)
    if where == "payload" and entries:
        e = rnd.choice(entries)
        b = bytearray(e["payload"])
        for _ in range(rnd.randint(1, 3)):
            mutate_bytes(b, rnd, desc)
        e["payload"] = bytes(b)
    elif where == "json_text":
        b = bytearray(hjson)
        for _ in range(rnd.randint(1, 3)):
            mutate_bytes(b, rnd, desc)
        hjson = bytes(b)
    elif where == "json_value":
        h = json.loads(hjson)
        paths = []

        def walk(o, p):
            if isinstance(o, dict):
                for k, v in o.items():
                    walk(v, p + [k])
            elif isinstance(o, list):
                for i, v in enumerate(o):
                    walk(v, p + [i])
            paths.append(p)

        walk(h, [])
        p = rnd.choice(paths[:-1])
        cur = h
        for k in p[:-1]:
            cur = cur[k]
        val = rnd.choice(
            (
                None,
                True,
                -1,
                0,
                1,
                2,
                3,
                4,
                17,
                21,
                22,
                65536,
                65537,
                2**31,
                2**64,
                -1e39,
                1e39,
                3.4e38,
                1e-45,
                0.5,
                "x",
                [],
                {},
                [0, 0, 0],
                "smallest3",
                "morton",
            )
        )
        if rnd.random() < 0.2 and isinstance(cur, dict):
            del cur[p[-1]]
            desc.append(f"del {p}")
        else:
            cur[p[-1]] = val
            desc.append(f"{p}={val!r}")
        hjson = json.dumps(h, sort_keys=True, separators=(",", ":")).encode()
    elif where == "table" and entries:
        e = rnd.choice(entries)
        i = rnd.choice((0, 1, 2, 3, 4, 6, 8))
        limit = {0: None, 6: 2**64, 8: 2**32}.get(i, 256)
        if i == 0:
            e["f"][0] = bytes(rnd.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ \xff") for _ in range(4))
        else:
            e["f"][i] = rnd.choice((0, 1, 2, 3, 8, e["f"][i] + 1, max(e["f"][i] - 1, 0), rnd.randrange(limit)))
        desc.append(f"table[{i}]={e['f'][i]!r}")
        if rnd.random() < 0.2:
            entries.remove(e) if rnd.random() < 0.5 else entries.append(dict(e, f=list(e["f"])))
            desc.append("remove/dup entry")
    else:
        i = rnd.randrange(6)
        fixed[i] = rnd.choice((0, 1, 2, fixed[i] + 1, rnd.randrange(2**16)))
        desc.append(f"fixed[{i}]={fixed[i]}")
    return pack(fixed, hjson, entries)


def run(count: int, seed: int, timeout: float, report_every: int) -> dict:
    goldens = [(p.name, p.read_bytes()) for p in sorted((REPO / "tests" / "data" / "golden").glob("*.exgs"))]
    if not goldens:
        raise SystemExit("no golden files in tests/data/golden")
    rnd = random.Random(seed)
    counts = Counter()
    kinds = Counter()
    fields = Counter()
    examples = []
    tmax = 0.0
    tsum = 0.0
    worst = None
    signal.signal(signal.SIGALRM, _alarm)
    t_start = time.perf_counter()
    for i in range(count):
        name, data = rnd.choice(goldens)
        desc = [name]
        mode = "checksum" if rnd.random() < 0.5 else "raw"
        kinds[mode] += 1
        case = checksum_case(data, rnd, desc) if mode == "checksum" else raw_case(data, rnd, desc)
        t0 = time.perf_counter()
        outcome = None
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            s = F.decode(case, path="fuzz.exgs")
            finite = all(
                np.isfinite(getattr(s, f)).all() for f in ("means", "quats", "log_scales", "opacity_logits", "sh")
            )
            outcome = "decoded" if finite else "other"
            if not finite:
                detail = "decoded scene has NaN/Inf"
        except FormatError as e:
            outcome = "format_error" if e.field else "other"
            fields[(e.field or "?").split("[")[0]] += 1
            detail = "FormatError without field: " + str(e)
        except Hang:
            outcome = "other"
            detail = f"hang (> {timeout} s)"
        except BaseException as e:  # noqa: BLE001 - counting everything else is the point
            outcome = "other"
            detail = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.perf_counter() - t0
        tsum += dt
        if dt > tmax:
            tmax, worst = dt, " ".join(desc)
        counts[outcome] += 1
        if outcome == "other" and len(examples) < 20:
            examples.append({"case": i, "mutations": desc, "detail": detail[:2000]})
        if report_every and (i + 1) % report_every == 0:
            print(f"{i + 1}/{count}: {dict(counts)} max {tmax * 1e3:.1f} ms", flush=True)
    return {
        "count": count,
        "seed": seed,
        "golden_files": [g[0] for g in goldens],
        "modes": dict(kinds),
        "format_error": counts["format_error"],
        "decoded": counts["decoded"],
        "other": counts["other"],
        "max_ms_per_case": round(tmax * 1e3, 3),
        "mean_ms_per_case": round(tsum / max(count, 1) * 1e3, 3),
        "slowest_case": worst,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "error_fields_top": dict(fields.most_common(25)),
        "other_examples": examples,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds before a case counts as a hang")
    ap.add_argument("--report-every", type=int, default=10_000)
    ap.add_argument("--json", help="write the summary here as JSON")
    a = ap.parse_args(argv)
    r = run(a.count, a.seed, a.timeout, a.report_every)
    print(json.dumps({k: v for k, v in r.items() if k != "other_examples"}, indent=1))
    for ex in r["other_examples"]:
        print("OTHER:", json.dumps(ex))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 1 if r["other"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
