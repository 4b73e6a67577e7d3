"""Where the restoration worker's Python lives, and how to create it.

The worker (``python -m exgs_core.worker``) needs torch, diffusers and safetensors besides exgs_core's numeric
dependencies; Blender's own Python has none of the first three. One environment serves every Blender version and
every exgs install: the worker is a separate process, and the asking exgs_core travels to it on PYTHONPATH
(:func:`exgs_core.worker.client.resolve_python` finds the environment). Its default place (:func:`default_dir`):

=========  ===============================================
Linux      ``$XDG_DATA_HOME/exgs/worker`` (``~/.local/share/exgs/worker``)
macOS      ``~/Library/Application Support/exgs/worker``
Windows    ``%LOCALAPPDATA%\\exgs\\worker``
=========  ===============================================

``$EXGS_WORKER_HOME`` overrides it. Create it with any Python 3.10-3.13 (the documented command)::

    python3 -m venv ~/.local/share/exgs/worker
    ~/.local/share/exgs/worker/bin/python -m pip install torch diffusers safetensors numpy numba pillow zstandard plyfile

or ``python -m exgs_core.worker.environment`` (prints the commands, ``--create`` runs them), or in Blender:
Preferences > Add-ons > ExGS > *Set Up Worker*, which runs the same two commands. Afterwards the add-on and the
``exgs`` tools find it without any setting.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

#: What the worker imports beyond the standard library (torch: the CUDA build on Linux/Windows from PyPI, so
#: gsplat can render on an NVIDIA GPU; the CPU build restores too).
WORKER_PACKAGES = ("torch", "diffusers", "safetensors", "numpy", "numba", "pillow", "zstandard", "plyfile")


def default_dir() -> Path:
    """The worker environment's folder: ``$EXGS_WORKER_HOME``, else the platform's per-user data folder + exgs/worker."""
    env = os.environ.get("EXGS_WORKER_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "exgs" / "worker"


def python_in(folder: str | os.PathLike) -> Path:
    """The Python executable of the virtual environment ``folder`` (``bin/python`` or ``Scripts\\python.exe``)."""
    folder = Path(folder)
    return folder / "Scripts" / "python.exe" if sys.platform == "win32" else folder / "bin" / "python"


def default_python() -> str | None:
    """The default worker environment's Python when it exists (created by :func:`create` or the documented
    command), else None."""
    p = python_in(default_dir())
    return str(p) if p.is_file() and os.access(p, os.X_OK) else None


def find_base_python() -> str | None:
    """A Python 3.10-3.13 that can create the environment: ``$EXGS_WORKER_BASE_PYTHON``, else this process's own
    Python (Blender's bundled one inside Blender), else ``python3`` / ``python`` on PATH; None if there is none."""
    from .client import own_python

    cands = [os.environ.get("EXGS_WORKER_BASE_PYTHON"), own_python(), shutil.which("python3"), shutil.which("python")]
    for c in cands:
        if not c or not os.path.isfile(c):
            continue
        try:
            r = subprocess.run(
                [c, "-c", "import sys, venv; print(sys.version_info[0] * 100 + sys.version_info[1])"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if r.returncode == 0 and r.stdout.strip().isdigit() and 310 <= int(r.stdout.strip()) <= 313:
            return c
    return None


def setup_commands(
    base_python: str, folder: str | os.PathLike | None = None, packages: tuple[str, ...] = WORKER_PACKAGES
) -> list[list[str]]:
    """The two commands that create the worker environment in ``folder`` (default :func:`default_dir`)."""
    folder = Path(folder) if folder is not None else default_dir()
    py = str(python_in(folder))
    cmds = [[base_python, "-m", "venv", str(folder)]]
    if packages:
        cmds.append([py, "-m", "pip", "install", "--disable-pip-version-check", *packages])
    return cmds


def create(
    folder: str | os.PathLike | None = None,
    *,
    base_python: str | None = None,
    log=None,
    cancel=None,
    packages: tuple[str, ...] = WORKER_PACKAGES,
) -> str:
    """Create (or complete) the worker environment in ``folder`` and return its Python.

    Runs :func:`setup_commands` one after the other, their output going to ``log`` (a binary file object, or
    discarded). ``cancel``: an Event-like object; when set, the running command is stopped. Downloads the packages
    from PyPI (several GB for torch with CUDA).

    Raises:
        WorkerError: no base Python, a command failed (with the end of its output) or it was cancelled.
    """
    from .client import WorkerError

    folder = Path(folder) if folder is not None else default_dir()
    base = base_python or find_base_python()
    if base is None:
        raise WorkerError(
            "no Python 3.10-3.13 found to create the worker environment with (set $EXGS_WORKER_BASE_PYTHON)",
            str(folder),
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tail = bytearray()
    for cmd in setup_commands(base, folder, packages):
        if cmd[1:3] == ["-m", "venv"] and python_in(folder).is_file():
            continue  # already there: only (re)install the packages
        if log is not None:
            log.write(("$ " + shlex.join(cmd) + "\n").encode())
            log.flush()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert p.stdout is not None
        for line in iter(p.stdout.readline, b""):
            tail[:] = (tail + line)[-4000:]
            if log is not None:
                log.write(line)
                log.flush()
            if cancel is not None and cancel.is_set():
                p.kill()
                break
        rc = p.wait()
        if cancel is not None and cancel.is_set():
            raise WorkerError("worker environment setup cancelled", str(folder))
        if rc:
            last = tail.decode(errors="replace").strip().splitlines()[-3:]
            raise WorkerError(f"'{shlex.join(cmd[:4])} ...' failed (exit {rc}): {' | '.join(last)}", str(folder))
    return str(python_in(folder))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m exgs_core.worker.environment",
        description="Show (default) or create (--create) the ExGS restoration worker's "
        "Python environment, where the Blender add-on and exgs find it.",
    )
    ap.add_argument("--dir", type=Path, default=None, help=f"where (default: {default_dir()})")
    ap.add_argument("--create", action="store_true", help="create it now (downloads torch + diffusers from PyPI)")
    args = ap.parse_args(argv)
    folder = args.dir or default_dir()
    base = find_base_python() or "python3"
    if not args.create:
        print(f"worker environment: {folder} ({'exists' if python_in(folder).is_file() else 'not created yet'})")
        for cmd in setup_commands(base, folder):
            print(shlex.join(cmd))
        return 0
    from .client import WorkerError

    try:
        py = create(folder, log=sys.stdout.buffer)
    except WorkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"worker environment ready: {py}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
