"""exgs_core.io.load / detect_format: the reader is picked by content, whatever the file is called."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from exgs_testpaths import DATA, shared_file

from exgs_core.errors import FormatError, UnsupportedFormatError
from exgs_core.io import detect_format, load, save_ply
from exgs_core.io.ply import read_ply
from exgs_core.io.splat import read_splat

FIXTURES = {
    "donut_sh0_2000.ply": ("ply", read_ply),
    "donut_sh0_300_ascii.ply": ("ply", read_ply),
    "supersplat_label_sh3_1000.ply": ("ply", read_ply),
    "plant_2000.splat": ("splat", read_splat),
}
NAMES = ["same", "noext", ".bin", ".ply", ".splat", ".spz", ".sog", "x.tar.gz"]


def renamed(tmp_path, src, how):
    stem = src.name.split(".")[0]
    name = {"same": src.name, "noext": stem, "x.tar.gz": stem + ".tar.gz"}.get(how, stem + how)
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


@pytest.mark.parametrize("how", NAMES)
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_load_picks_reader_by_content(tmp_path, fixture, how):
    fmt, reader = FIXTURES[fixture]
    p = renamed(tmp_path, DATA / fixture, how)
    assert detect_format(p) == fmt
    s = load(p)
    assert s.meta["format"] == fmt and s.meta["path"] == os.fspath(p)
    assert s.equal(reader(DATA / fixture))
    assert s.extras.keys() == reader(DATA / fixture).extras.keys()


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_forced_format(fixture):
    fmt, reader = FIXTURES[fixture]
    assert load(DATA / fixture, format=fmt).equal(reader(DATA / fixture))


def test_forcing_the_wrong_reader_is_a_format_error():
    with pytest.raises(FormatError) as ei:
        load(DATA / "donut_sh0_2000.ply", format="splat")  # 112,440 B is not a multiple of 32
    assert str(DATA / "donut_sh0_2000.ply") in str(ei.value)
    with pytest.raises(FormatError, match="not a PLY"):
        load(DATA / "plant_2000.splat", format="ply")


def test_truncated_files_through_load(tmp_path):
    for fixture in ("donut_sh0_2000.ply", "plant_2000.splat"):
        p = tmp_path / ("cut_" + fixture)
        p.write_bytes((DATA / fixture).read_bytes()[:-7])
        with pytest.raises(FormatError) as ei:
            load(p)
        assert os.fspath(p) in str(ei.value)


def test_unrecognised_content(tmp_path):
    p = tmp_path / "noise"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    with pytest.raises(UnsupportedFormatError) as ei:
        load(p)
    assert os.fspath(p) in str(ei.value)


def test_save_ply_then_load(tmp_path):
    s = load(DATA / "supersplat_label_sh3_1000.ply")
    out = tmp_path / "out"  # no extension
    save_ply(s, out)
    r = load(out)
    assert r.meta["format"] == "ply" and r.equal(s) and list(r.extras) == ["transform"]


@pytest.mark.shared
@pytest.mark.parametrize(
    "name,fmt",
    [
        ("scenes/gshairlod_donut_fused_sh0.ply", "ply"),
        ("scenes/kacytran_try_iter7000_sh3.ply", "ply"),
        ("scenes/supersplat_mixed_drops_label_crop_sh3.ply", "ply"),
        ("scenes/splatset_plant.splat", "splat"),
        ("scenes/marcelpadilla_academic_tarot_cards.splat", "splat"),
        ("scenes/playcanvas_biker.compressed.ply", "compressed_ply"),
        ("reference-ply/splatset_plant.from-splat.ply", "ply"),
    ],
)
def test_shared_detection(tmp_path, name, fmt):
    src = shared_file(name)
    assert detect_format(src) == fmt
    p = renamed(tmp_path, src, "noext")
    assert detect_format(p) == fmt
    if fmt in ("ply", "splat"):
        assert load(p).n == load(src).n


@pytest.mark.parametrize("offset", [10, 11, 12, 16])
def test_corrupt_deflate_data_in_a_gzip_spz_is_a_format_error(tmp_path, offset):
    """Detection reads the first bytes of a gzip stream to tell SPZ from other gzip files: corrupt deflate data there
    (zlib.error, found by mutation fuzzing) must come back as a FormatError naming the file, not a raw zlib error."""
    raw = bytearray((DATA / "pdal_fourth_st_sh3_head4096.v2.spz").read_bytes())
    assert raw[:2] == b"\x1f\x8b"
    raw[offset : offset + 4] = b"\xff\xff\xff\xff"  # an invalid deflate block right after the 10-byte gzip header
    p = tmp_path / "bad.spz"
    p.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="bad.spz.*gzip stream is corrupt"):
        load(p)


@pytest.mark.parametrize("fmt", [None, "sog"])
def test_zip_needing_an_unknown_version_is_a_format_error(tmp_path, fmt):
    """zipfile raises NotImplementedError for a "version needed to extract" it does not know (a one-field
    corruption found by fuzzing): detection and the SOG reader both turn it into a FormatError naming the file."""
    import struct

    raw = bytearray((DATA / "playcanvas_flowers_lod2_sh2_head13rows.sog").read_bytes())
    i = raw.find(b"PK\x01\x02")  # the first central-directory entry
    raw[i + 6 : i + 8] = struct.pack("<H", 227)  # "needs zip 22.7"
    p = tmp_path / "bad.sog"
    p.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="bad.sog.*zip file version 22.7"):
        load(p, format=fmt)


@pytest.mark.parametrize("name", ["cut.splat", "cut_no_extension"])
def test_a_cut_off_splat_says_truncated(tmp_path, name):
    """A .splat cut inside a record (size not a multiple of 32) is reported as truncated, naming the file and the
    stray bytes -- also without the .splat extension when the records look like .splat -- not as unrecognised."""
    raw = (DATA / "plant_2000.splat").read_bytes()
    p = tmp_path / name
    p.write_bytes(raw[: 32 * 700 + 13])
    with pytest.raises(FormatError, match=rf"{name}.*truncated \.splat.*700 whole 32-byte records and 13 stray"):
        load(p)
