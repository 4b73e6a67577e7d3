"""Regression tests for a hostile-input probe: oversized PLY headers (quadratic parsing), non-regular files (a FIFO
hung the readers), CR-only and blank-line PLY headers, and CLI options that failed late or untyped (overflow, NaN,
sizes that ran out of memory after a minute). Every input is built here; every test is quick, and the ones where
the bug was slowness assert a time bound."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest
from exgs_testpaths import DATA

from exgs_core.cli import main
from exgs_core.errors import FormatError
from exgs_core.io import FORMATS, detect_format, load
from exgs_core.io.compressed_ply import read_compressed_ply
from exgs_core.io.ply import MAX_HEADER_BYTES, REQUIRED_PROPERTIES, read_ply
from exgs_core.io.splat import read_splat

DONUT = DATA / "donut_sh0_2000.ply"
DONUT_ASCII = DATA / "donut_sh0_300_ascii.ply"
CPLY = DATA / "playcanvas_biker_head16chunks.compressed.ply"


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        fn(*args, **kwargs)
    except FormatError as e:
        return e, time.perf_counter() - t0
    return None, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ 1. header size / time
def _ply_header(lines: list[str], fmt: str = "binary_little_endian") -> bytes:
    return ("\n".join(["ply", f"format {fmt} 1.0", *lines, "end_header"]) + "\n").encode()


def _many_props(n: int, element: str = "vertex", count: int = 0) -> list[str]:
    return [f"element {element} {count}"] + [f"property float p{i}" for i in range(n)]


N_LONG = 20_000  # ~0.4 MB of header: 3.8 s with the old per-line duplicate checks, ~0.05 s now


def test_long_ply_header_is_parsed_in_linear_time(tmp_path):
    p = tmp_path / "props.ply"
    p.write_bytes(_ply_header(_many_props(N_LONG)))
    err, dt = _timed(read_ply, p)
    assert err is not None and "missing 'x'" in str(err) and str(p) in str(err)
    assert dt < 1.0, f"read_ply spent {dt:.2f} s on a {p.stat().st_size:,} B header"
    err, dt = _timed(load, p)
    assert err is not None and dt < 1.0, dt


def test_many_elements_are_parsed_in_linear_time(tmp_path):
    p = tmp_path / "elements.ply"
    lines = (
        [f"element e{i} 0" for i in range(N_LONG)]
        + ["element vertex 0"]
        + [f"property float {n}" for n in REQUIRED_PROPERTIES]
    )
    p.write_bytes(_ply_header(lines))
    t0 = time.perf_counter()
    s = read_ply(p)
    dt = time.perf_counter() - t0
    assert s.n == 0 and dt < 1.0, dt
    p.write_bytes(_ply_header(lines + ["element e7 0"]))
    with pytest.raises(FormatError, match="duplicate element 'e7'"):
        read_ply(p)


def test_long_compressed_ply_header_is_parsed_in_linear_time(tmp_path):
    p = tmp_path / "chunkprops.compressed.ply"
    lines = (
        _many_props(N_LONG, "chunk")
        + ["element vertex 0"]
        + [f"property uint packed_{k}" for k in ("position", "rotation", "scale", "color")]
    )
    p.write_bytes(_ply_header(lines))
    assert detect_format(p) == "compressed_ply"
    err, dt = _timed(read_compressed_ply, p)
    assert err is not None and "min_x" in str(err) and str(p) in str(err)
    assert dt < 1.0, f"read_compressed_ply spent {dt:.2f} s"
    # many elements: linear too, and a repeated element is an error (it was silently mis-sliced)
    lines = [f"element e{i} 0" for i in range(N_LONG)] + lines
    p.write_bytes(_ply_header(lines))
    err, dt = _timed(read_compressed_ply, p)
    assert err is not None and dt < 1.0, dt
    p.write_bytes(_ply_header(lines + ["element e5 0"]))
    with pytest.raises(FormatError, match="duplicate element 'e5'"):
        read_compressed_ply(p)


@pytest.mark.parametrize("reader", ["ply", "compressed_ply"])
def test_header_over_the_size_limit_is_refused_quickly(tmp_path, reader):
    # ~1.26 MB of property lines before 'end_header' (72 s in the old parser before it said no)
    element = "vertex" if reader == "ply" else "chunk"
    lines = _many_props(60_000, element)
    p = tmp_path / "huge_header.ply"
    p.write_bytes(_ply_header(lines))
    assert p.stat().st_size > MAX_HEADER_BYTES
    t0 = time.perf_counter()
    with pytest.raises(FormatError) as ei:
        load(p, format=reader)
    dt = time.perf_counter() - t0
    msg = str(ei.value)
    assert str(p) in msg and "end_header" in msg and f"{MAX_HEADER_BYTES:,}" in msg, msg
    assert dt < 1.0, f"{dt:.2f} s"


# ------------------------------------------------------------------------------------------ 2. non-regular files
def _call_or_unblock(fn, fifos, timeout=5.0):
    """Run ``fn()`` in a thread; if it is still running after ``timeout`` s (blocked opening a FIFO), open the
    FIFOs' write ends to release it and fail. Returns what ``fn`` returned or raised."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        for f in fifos:
            try:
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        t.join(5)
        pytest.fail(f"{fn} blocked on a named pipe for more than {timeout} s")
    return box


@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "pipe.ply"
    os.mkfifo(p)
    return p


def _assert_refused(box, path):
    e = box.get("error")
    assert isinstance(e, FormatError), box
    assert str(path) in str(e) and "not a regular file" in str(e), str(e)


def test_fifo_is_refused_without_blocking(fifo):
    _assert_refused(_call_or_unblock(lambda: detect_format(fifo), [fifo]), fifo)
    _assert_refused(_call_or_unblock(lambda: load(fifo), [fifo]), fifo)
    for fmt in FORMATS:
        _assert_refused(_call_or_unblock(lambda: load(fifo, format=fmt), [fifo]), fifo)
    for reader in (read_ply, read_compressed_ply, read_splat):
        _assert_refused(_call_or_unblock(lambda: reader(fifo), [fifo]), fifo)


@pytest.mark.skipif(
    not os.path.exists("/dev/zero") or not stat.S_ISCHR(os.stat("/dev/zero").st_mode), reason="needs /dev/zero"
)
def test_character_device_is_refused():
    for call in (
        lambda: detect_format("/dev/zero"),
        lambda: load("/dev/zero"),
        lambda: read_ply("/dev/zero"),
        lambda: read_compressed_ply("/dev/zero"),
        lambda: read_splat("/dev/zero"),
        *[lambda f=f: load("/dev/zero", format=f) for f in FORMATS],
    ):
        with pytest.raises(FormatError, match="not a regular file"):
            call()


def _cli(capsys, *argv):
    """Run the CLI in-process: (exit status, stderr, seconds). argparse errors exit via SystemExit."""
    t0 = time.perf_counter()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    dt = time.perf_counter() - t0
    return code, capsys.readouterr().err, dt


@pytest.mark.parametrize(
    "argv",
    [
        ("info", "{fifo}"),
        ("info", "--json", "{fifo}"),
        ("convert", "{fifo}", "{tmp}/out.ply"),
        ("decompress", "{fifo}", "-o", "{tmp}/out.ply"),
        ("compress", "{fifo}", "-o", "{tmp}/out.exgs", "-q"),
        ("render", "{fifo}", "--out", "{tmp}/r", "-q"),
        ("render", DONUT, "--cameras", "{fifo}", "--out", "{tmp}/r", "-q"),
        ("eval", DONUT, "{fifo}", "-q"),
        ("eval", DONUT, DONUT, "--cameras", "{fifo}", "-q"),
        ("compress", DONUT, "--cameras", "{fifo}", "-o", "{tmp}/out.exgs", "-q"),
    ],
    ids=lambda a: " ".join(map(str, a[:2])),
)
def test_cli_refuses_a_fifo_before_any_work(capsys, tmp_path, fifo, argv):
    argv = [str(a).format(fifo=fifo, tmp=tmp_path) for a in argv]
    box = _call_or_unblock(lambda: _cli(capsys, *argv), [fifo])
    code, err, dt = box["value"]
    assert code == 2 and "exgs: error:" in err and str(fifo) in err and "not a regular file" in err, err
    assert dt < 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.ply"]  # nothing written


# ------------------------------------------------------------------------------------------ 2. CR-only, blank lines
def _header_split(data: bytes) -> tuple[bytes, bytes]:
    cut = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:cut], data[cut:]


@pytest.mark.parametrize("src", [DONUT, DONUT_ASCII, CPLY], ids=lambda p: p.name)
def test_cr_only_headers_are_detected_and_read(tmp_path, src):
    head, body = _header_split(src.read_bytes())
    if src == DONUT_ASCII:
        body = body.replace(b"\n", b"\r")
    p = tmp_path / ("cr_" + src.name)
    p.write_bytes(head.replace(b"\n", b"\r") + body)
    want = load(src)
    assert detect_format(p) == want.meta["format"]
    assert load(p).equal(want)


@pytest.mark.parametrize("blank", [b"\n", b"\n\n", b" \n", b"\t\n"], ids=["one", "two", "space", "tab"])
@pytest.mark.parametrize("src", [DONUT, DONUT_ASCII], ids=["binary", "ascii"])
def test_blank_header_lines_are_accepted_in_binary_and_ascii(tmp_path, src, blank):
    head, body = _header_split(src.read_bytes())
    lines = head.split(b"\n")
    # after the magic, in the middle of the property list, and just before end_header
    lines.insert(-2, blank.rstrip(b"\n"))
    lines.insert(len(lines) // 2, blank.rstrip(b"\n"))
    lines.insert(1, blank.rstrip(b"\n"))
    p = tmp_path / "blank.ply"
    p.write_bytes(b"\n".join(lines) + body)
    assert detect_format(p) == "ply"
    assert load(p).equal(load(src))
    assert read_ply(p).equal(load(src))


def test_ascii_header_quirks_plyfile_rejects_are_typed(tmp_path):
    """Whatever the header parser accepts, the ASCII body path reads it or raises a FormatError."""
    head, body = _header_split(DONUT_ASCII.read_bytes())
    variants = {
        "crlf": head.replace(b"\n", b"\r\n") + body,
        "double_spaces": head.replace(b"property float", b"property   float") + body,
        "trailing_space": head.replace(b"\n", b"  \n") + body,
        "obj_info": head.replace(b"element vertex", b"obj_info made by a test\nelement vertex") + body,
    }
    want = load(DONUT_ASCII)
    for name, data in variants.items():
        p = tmp_path / f"{name}.ply"
        p.write_bytes(data)
        try:
            got = load(p)
        except FormatError as e:
            assert str(p) in str(e), (name, e)
        else:
            assert got.equal(want), name


# ------------------------------------------------------------------------------------------ 3. CLI option edges
def _assert_option_error(capsys, tmp_path, option, *argv, fragment=None):
    before = sorted(tmp_path.iterdir())
    code, err, dt = _cli(capsys, *argv)
    assert code == 2, (code, err)
    assert option in err, err
    if fragment:
        assert fragment in err, err
    assert "Traceback" not in err
    assert dt < 2.0, f"{dt:.1f} s before the error"
    assert sorted(tmp_path.iterdir()) == before  # no output, no output folder


@pytest.mark.parametrize("value", ["inf", "1e400", "-inf", "nan", "0", "-1", "1e-9"])
def test_compress_target_mb_must_be_a_positive_finite_size(capsys, tmp_path, value):
    _assert_option_error(
        capsys, tmp_path, "--target-mb", "compress", DONUT, "-o", tmp_path / "o.exgs", f"--target-mb={value}", "-q"
    )


@pytest.mark.parametrize(
    "option,value",
    [
        ("--ratio", "nan"),
        ("--ratio", "inf"),
        ("--ratio", "0"),
        ("--ratio", "1.5"),
        ("--sh-keep", "nan"),
        ("--sh-keep", "-0.1"),
        ("--views", "100000"),
        ("--view-size", "100000"),
    ],
)
def test_compress_numeric_options_are_checked_up_front(capsys, tmp_path, option, value):
    _assert_option_error(
        capsys, tmp_path, option, "compress", DONUT, "-o", tmp_path / "o.exgs", f"{option}={value}", "-q"
    )


@pytest.mark.parametrize("value", [("nan", "0", "0"), ("0", "inf", "0"), ("0", "0", "2"), ("-1", "0", "0")])
def test_render_background_must_be_a_colour(capsys, tmp_path, value):
    _assert_option_error(
        capsys,
        tmp_path,
        "--background",
        "render",
        DONUT,
        "--out",
        tmp_path / "r",
        "-q",
        "--size",
        "16x16",
        "--views",
        "1",
        "--background",
        *value,
    )


@pytest.mark.parametrize("size", ["16384x16384", "16384x8192", "9000x9000"])
def test_render_size_is_bounded_by_a_pixel_budget(capsys, tmp_path, size):
    _assert_option_error(
        capsys,
        tmp_path,
        "--size",
        "render",
        DONUT,
        "--out",
        tmp_path / "r",
        "-q",
        "--size",
        size,
        "--views",
        "1",
        fragment="pixels",
    )


@pytest.mark.parametrize(
    "argv", [("render", DONUT, "--out", "{tmp}/r"), ("eval", DONUT, DONUT)], ids=["render", "eval"]
)
def test_views_upper_bound(capsys, tmp_path, argv):
    argv = [str(a).format(tmp=tmp_path) for a in argv]
    _assert_option_error(capsys, tmp_path, "--views", *argv, "--views", "5000", "-q")


@pytest.mark.parametrize("size", ["8x8", "10x64", "64x10", "8192x8192"])
def test_eval_size_fits_ssim_and_memory(capsys, tmp_path, size):
    _assert_option_error(capsys, tmp_path, "--size", "eval", DONUT, DONUT, "--size", size, "--views", "1", "-q")


def test_eval_smallest_size_works(capsys):
    code, err, _ = _cli(capsys, "eval", DONUT, DONUT, "--size", "11x11", "--views", "1", "-q", "--json")
    assert code == 0, err


def test_render_size_derived_from_cameras_json_is_bounded(capsys, tmp_path):
    import json

    cams = [
        {
            "id": 0,
            "img_name": "tall",
            "width": 10,
            "height": 1_000_000,
            "position": [0, 0, -3],
            "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            "fx": 10.0,
            "fy": 10.0,
        }
    ]
    cj = tmp_path / "cameras.json"
    cj.write_text(json.dumps(cams))
    code, err, dt = _cli(capsys, "render", DONUT, "--cameras", cj, "--size", "512x512", "--out", tmp_path / "r", "-q")
    assert code == 2 and "cameras.json" in err and "pixels" in err, err
    assert dt < 5.0 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("reader", ["spz", "sog", "exgs", "compressed_ply"])
def test_format_readers_called_directly_refuse_a_fifo(tmp_path, reader):
    """Not only load(): each reader called on its own refuses a named pipe at once instead of blocking."""
    import importlib

    from exgs_core.errors import FormatError

    fn = {
        "spz": ("exgs_core.io.spz", "read_spz"),
        "sog": ("exgs_core.io.sog", "read_sog"),
        "exgs": ("exgs_core.exgs_format", "read_exgs"),
        "compressed_ply": ("exgs_core.io.compressed_ply", "read_compressed_ply"),
    }[reader]
    fifo = tmp_path / f"pipe.{reader}"
    os.mkfifo(fifo)
    read = getattr(importlib.import_module(fn[0]), fn[1])
    with pytest.raises(FormatError, match="named pipe"):
        read(fifo)
