"""numba's on-disk cache when the install is read-only.

The kernels use ``@njit(cache=True)``; numba picks the cache directory when the module is imported (the package's
``__pycache__``, else its user-wide cache directory under ``$HOME``), and raises ``RuntimeError: cannot cache
function ...: no locator available`` when neither can be written. ``import exgs_core`` must then point numba at a
private temporary folder instead, and leave a normal install's cache where it is.

How the read-only install is made real (not simulated): ``exgs_core`` is copied into a temporary folder whose
directories are then ``chmod 0555``, ``HOME`` is another ``0555`` folder (``XDG_CACHE_HOME`` and
``NUMBA_CACHE_DIR`` removed), and the subprocess runs with those permissions enforced. As an ordinary user chmod
is enough; as root (CI containers) it is not, because root's ``CAP_DAC_OVERRIDE`` writes anywhere, so the
subprocess is started through ``setpriv`` with ``CAP_DAC_OVERRIDE`` / ``CAP_DAC_READ_SEARCH`` / ``CAP_FOWNER``
removed from its bounding and inheritable sets: it is still uid 0 (it can read the root-owned interpreter and
virtual environment) but obeys file modes like anyone else. The test first checks that the folders really are
unwritable for that subprocess, and skips (never passes vacuously) when that cannot be arranged.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings

import pytest
from exgs_testpaths import REPO

pytest.importorskip("numba")

_DROP = "-dac_override,-dac_read_search,-fowner"


def _prefix() -> list[str] | None:
    if os.name != "posix":
        return None
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None
    return [setpriv, f"--bounding-set={_DROP}", f"--inh-caps={_DROP}", "--"]


def _chmod_tree(root, mode_dirs):
    for dirpath, _dirnames, _ in os.walk(root):
        os.chmod(dirpath, mode_dirs)


@pytest.fixture
def readonly_install(tmp_path):
    """(env, run) for a subprocess that sees a read-only copy of exgs_core and a read-only HOME."""
    prefix = _prefix()
    if prefix is None:
        pytest.skip("cannot run a subprocess that obeys file permissions here (root without setpriv, or not POSIX)")
    site = tmp_path / "site"
    shutil.copytree(
        REPO / "exgs_core", site / "exgs_core", ignore=shutil.ignore_patterns("__pycache__", "weights", "*.pyc")
    )
    home = tmp_path / "home"
    home.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o700)
    _chmod_tree(site, 0o555)
    os.chmod(home, 0o555)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH", "NUMBA_DISABLE_JIT")
    }
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")

    def run(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            prefix + [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            cwd=str(tmp),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # the subprocess must really be unable to write the package's __pycache__ and HOME
    probe = run(
        f"""
        import os
        for d in ({str(site / "exgs_core")!r}, {str(home)!r}):
            try:
                open(os.path.join(d, "probe"), "w").close()
                print("WRITABLE", d)
            except OSError:
                pass
    """,
        timeout=60,
    )
    if probe.returncode != 0 or "WRITABLE" in probe.stdout:
        _chmod_tree(site, 0o755)
        os.chmod(home, 0o755)
        pytest.skip(f"could not make the install read-only for a subprocess: {probe.stdout} {probe.stderr}")
    yield env, run, site, home, tmp
    _chmod_tree(site, 0o755)
    os.chmod(home, 0o755)


@pytest.mark.slow
def test_readonly_install_and_home_can_still_render(readonly_install):
    env, run, site, home, tmp = readonly_install
    p = run(f"""
        import os, warnings
        import numpy as np
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import exgs_core
        assert exgs_core.__file__.startswith({str(site)!r}), exgs_core.__file__
        from exgs_core.camera import Camera
        from exgs_core.render import render
        from exgs_core.scene import GaussianScene
        rng = np.random.default_rng(0)
        n = 64
        scene = GaussianScene(rng.normal(0, 0.5, (n, 3)), rng.normal(size=(n, 4)),
                              np.log(rng.uniform(0.05, 0.1, (n, 3))), rng.normal(1, 1, n),
                              rng.normal(0, 0.5, (n, 1, 3)))
        cam = Camera.look_at([0.3, -3.0, 1.0], [0, 0, 0], [0, 0, 1], 50.0, 16, 16)
        res = render(scene, cam, backend="cpu")
        assert np.isfinite(res.rgb).all() and res.alpha.max() > 0
        print("CACHE", os.environ.get("NUMBA_CACHE_DIR"))
        print("NOTES", [str(w.message) for w in caught])
    """)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "no locator available" not in p.stderr
    cache = next(line.split(" ", 1)[1] for line in p.stdout.splitlines() if line.startswith("CACHE "))
    assert cache != "None" and cache.startswith(str(tmp)), p.stdout
    assert os.path.isdir(cache) and os.listdir(cache)  # the kernels really were cached there
    assert "NUMBA_CACHE_DIR" in p.stdout.split("NOTES", 1)[1]  # the one-line note says what happened


def test_readonly_install_with_writable_home_keeps_numba_default(readonly_install):
    """numba's own fallback (its user-wide cache under HOME) works: nothing is changed."""
    env, run, site, home, tmp = readonly_install
    os.chmod(home, 0o755)
    p = run("""
        import os, warnings
        warnings.simplefilter("error")
        import exgs_core, exgs_core.knn
        print("CACHE", os.environ.get("NUMBA_CACHE_DIR"))
        print("PATH", exgs_core.knn._build.kernel.stats.cache_path)
    """)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "CACHE None" in p.stdout
    assert os.path.join(str(home), ".cache", "numba") in p.stdout


def test_writable_install_is_unchanged(tmp_path):
    """A normal (writable) install: no NUMBA_CACHE_DIR, no note; numba caches in the package's __pycache__."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(REPO)
    p = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            "import os, exgs_core, exgs_core.knn; print(os.environ.get('NUMBA_CACHE_DIR'));"
            "print(exgs_core.knn._build.kernel.stats.cache_path)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[0] == "None"
    assert lines[1] == str(REPO / "exgs_core" / "__pycache__")


@pytest.fixture
def _numba_config():
    """numba may be imported in this process: re-read its config once the test's environment is restored."""
    yield
    config = sys.modules.get("numba.core.config")
    if config is not None:
        config.reload_config()


def test_user_set_numba_cache_dir_is_respected(_numba_config, monkeypatch, tmp_path):
    from exgs_core import _numba_cache

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setattr(_numba_cache, "_writable", lambda path: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _numba_cache.ensure_numba_cache() is None
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")


def test_private_fallback_folder(_numba_config, monkeypatch, tmp_path):
    """Neither location writable: a private (0700, ours, not a symlink) folder under the temp dir, reused by the
    next process; one someone else planted is not used."""
    from exgs_core import _numba_cache

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    real = _numba_cache._writable
    # the package and numba's user cache read as unwritable; the (patched) temporary directory is writable
    monkeypatch.setattr(_numba_cache, "_writable", lambda path: path.startswith(str(tmp_path)) and real(path))
    monkeypatch.setattr(_numba_cache.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(_numba_cache.tempfile, "tempdir", str(tmp_path))
    with pytest.warns(UserWarning, match="NUMBA_CACHE_DIR"):
        first = _numba_cache.ensure_numba_cache()
    assert first and os.path.dirname(first) == str(tmp_path) and os.environ["NUMBA_CACHE_DIR"] == first
    if os.name == "posix":
        assert stat.S_IMODE(os.lstat(first).st_mode) == 0o700
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    with pytest.warns(UserWarning):
        assert _numba_cache.ensure_numba_cache() == first  # same folder next time: the cache persists
    if os.name == "posix":
        monkeypatch.delenv("NUMBA_CACHE_DIR")
        os.chmod(first, 0o777)  # no longer private: not trusted, a fresh mkdtemp folder instead
        with pytest.warns(UserWarning):
            other = _numba_cache.ensure_numba_cache()
        assert other != first and stat.S_IMODE(os.lstat(other).st_mode) == 0o700
        monkeypatch.delenv("NUMBA_CACHE_DIR")
        shutil.rmtree(first)
        os.symlink(str(tmp_path / "elsewhere"), first)  # a planted symlink is not followed
        with pytest.warns(UserWarning):
            third = _numba_cache.ensure_numba_cache()
        assert third != first and not os.path.islink(third)
