"""exgs_core.viewer without a browser: formats and engines, the local server's rules, the self-contained page, the
typed errors. (tests/test_browser.py drives the real page in headless Chromium.)"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import socket
import zipfile

import numpy as np
import pytest
from exgs_testpaths import REPO

from exgs_core.camera import Camera
from exgs_core.conventions import logit
from exgs_core.errors import ExgsError, UnsupportedFormatError
from exgs_core.scene import GaussianScene
from exgs_core.viewer import (
    BUILD_COMMAND,
    PAGE_FILES,
    PortInUse,
    ViewerNotBuilt,
    ViewerServer,
    add_view_parser,
    check_built,
    choose_engine,
    prepare,
    sources_sha256,
    view_dict,
    viewer_format,
    write_html,
)

EXAMPLE = REPO / "examples" / "playcanvas_biker.spz"


def _scene(n=50, seed=0) -> GaussianScene:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    return GaussianScene(
        rng.normal(size=(n, 3)).astype(np.float32),
        (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32),
        np.full((n, 3), -3.0, np.float32),
        logit(np.full(n, 0.7)),
        rng.normal(0, 0.5, (n, 1, 3)).astype(np.float32),
    )


@pytest.fixture
def fake_build(tmp_path):
    """A viewer build folder with placeholder bundles (the server only serves them)."""
    d = tmp_path / "viewer"
    d.mkdir()
    for f in PAGE_FILES:
        (d / f).write_text(f"/* {f} */" if f.endswith(".js") else "<!doctype html><title>page</title>")
    (d / "build.json").write_text(json.dumps({"sources_sha256": sources_sha256(), "packages": {}}))
    return d


def _get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"Host": f"{host}:{port}"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body, dict(r.getheaders())


def test_formats_and_engines(tmp_path):
    from exgs_core.io import save

    assert viewer_format(EXAMPLE) == "spz"
    assert choose_engine("spz") == "babylon" and choose_engine("sog") == "playcanvas"
    assert choose_engine("glb") == "playcanvas" and choose_engine("ply") == "spark"
    # Spark 2.2 cannot read SPZ v4 (the example is v4): refused with the way out
    with pytest.raises(UnsupportedFormatError, match="v4.*babylon"):
        choose_engine("spz", "spark", EXAMPLE)
    with pytest.raises(UnsupportedFormatError, match="playcanvas cannot show spz"):
        choose_engine("spz", "playcanvas", EXAMPLE)
    glb = tmp_path / "s.glb"
    save(_scene(), glb)
    assert viewer_format(glb) == "glb"
    ex = tmp_path / "s.exgs"
    save(_scene(), ex)
    with pytest.raises(UnsupportedFormatError, match="exgs convert s.exgs out.spz") as e:
        viewer_format(ex)
    assert isinstance(e.value, ExgsError) and e.value.path == str(ex)


def test_not_built_names_the_build_command(tmp_path):
    with pytest.raises(ViewerNotBuilt, match=re.escape(BUILD_COMMAND)) as e:
        check_built(tmp_path)
    assert "index.html" in str(e.value)


def test_stale_build_is_reported(fake_build):
    assert check_built(fake_build)["stale"] is False
    (fake_build / "build.json").write_text(json.dumps({"sources_sha256": "0" * 64}))
    assert check_built(fake_build)["stale"] is True


def test_view_dict_is_the_opengl_camera():
    cam = Camera.look_at([1.0, -2.0, 3.0], [0, 0, 0], [0, -1, 0], 50, 320, 200, near=0.1, far=50)
    v = view_dict(cam, target=[0, 0, 0], up=[0, -1, 0])
    c2w = np.array(v["c2w"])
    np.testing.assert_allclose(c2w, cam.to_opengl_c2w())
    np.testing.assert_allclose(c2w[:3, 3], [1, -2, 3])
    np.testing.assert_allclose(-c2w[:3, 2], cam.forward)  # OpenGL looks along -z
    assert (v["width"], v["height"], v["near"], v["far"]) == (320, 200, 0.1, 50)
    json.dumps(v)


def test_server_serves_only_the_page_the_file_and_its_views(fake_build):
    inp = prepare(EXAMPLE, views=2, size=(64, 48))
    with ViewerServer(inp, directory=fake_build) as srv:
        assert srv.httpd.server_address[0] == "127.0.0.1"
        port = srv.port
        status, body, headers = _get(port, "/")
        assert status == 200 and b"<title>page</title>" in body
        assert headers["Content-Type"].startswith("text/html") and headers["Cache-Control"] == "no-store"
        status, body, _ = _get(port, "/file/" + inp.name)
        assert status == 200 and body == EXAMPLE.read_bytes()
        status, body, _ = _get(port, "/views.json")
        views = json.loads(body)
        assert status == 200 and len(views) == 2 and views[0]["width"] == 64
        for path in ("/file/other.spz", "/../README.md", "/build.json", "/file/", "/etc/passwd", "/index.html/.."):
            assert _get(port, path)[0] == 404, path
        assert _get(port, "/", host="evil.example")[0] == 403  # DNS rebinding
        assert _get(port, "/", host="localhost")[0] == 200
        assert "engine=babylon" in srv.url and srv.url.startswith(f"http://127.0.0.1:{port}/?")


def test_port_in_use_is_a_typed_error(fake_build):
    inp = prepare(EXAMPLE, views=1, size=(32, 32))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} is in use.*--port"):
            ViewerServer(inp, port=port, directory=fake_build)


def test_unbundled_sog_is_served_as_one_bundle(tmp_path):
    from exgs_core.io.sog_write import write_sog

    meta = tmp_path / "scene" / "meta.json"
    meta.parent.mkdir()
    write_sog(_scene(200), meta, bundle=False)
    inp = prepare(meta.parent, views=1, size=(32, 32))
    assert inp.fmt == "sog" and inp.engine == "playcanvas" and inp.name == "scene.sog"
    with zipfile.ZipFile(__import__("io").BytesIO(inp.data)) as z:
        names = set(z.namelist())
    assert "meta.json" in names and names <= {"meta.json", *(p.name for p in meta.parent.iterdir())}


def test_self_contained_page(fake_build, tmp_path):
    inp = prepare(EXAMPLE, views=3, size=(64, 48))
    out = tmp_path / "view.html"
    n = write_html(inp, out, directory=fake_build)
    text = out.read_text()
    assert n == len(text.encode())
    data = re.search(r'id="exgs-data"[^>]*data-name="playcanvas_biker.spz">([^<]+)<', text).group(1)
    assert base64.b64decode(data) == EXAMPLE.read_bytes()
    views = json.loads(re.search(r'id="exgs-views" type="application/json">([^<]+)<', text).group(1))
    assert len(views) == 3
    assert 'id="exgs-spz"' in text  # Babylon.js gets the SPZ decoder inline
    assert "default-src 'none'" in text  # no network
    assert not re.search(r"(src|href)=\"https?:", text)
    with pytest.raises(ViewerNotBuilt):
        write_html(inp, tmp_path / "x.html", directory=tmp_path / "nothing")


def test_cli_parser_defaults():
    p = argparse.ArgumentParser(prog="exgs")
    add_view_parser(p.add_subparsers(dest="command"))
    a = p.parse_args(["view", "x.spz", "--camera", "cams.json", "--port", "8080", "--no-browser"])
    assert (a.file, a.cameras, a.port, a.no_browser, a.engine) == ("x.spz", "cams.json", 8080, True, "auto")
    a = p.parse_args(["view", "x.spz", "--cameras", "c.json"])
    assert a.cameras == "c.json" and a.port == 0 and a.func.__name__ == "cmd_view"
