"""Keep numba's on-disk cache usable when the install and HOME are read-only.

exgs_core's numba kernels are compiled with ``cache=True``. numba chooses where to cache each kernel when its
module is imported: ``$NUMBA_CACHE_DIR`` when set, else the ``__pycache__`` next to the source file, else its
user-wide cache directory (``~/.cache/numba`` on Linux) -- and when none of them can be written it raises
``RuntimeError: cannot cache function ...: no locator available`` at import, so a user who can write neither the
package folder (a system-wide or read-only install) nor ``HOME`` could not render or compress at all.

:func:`ensure_numba_cache` runs at ``import exgs_core``, before any kernel module is imported. It changes nothing
when ``NUMBA_CACHE_DIR`` is set, when numba's JIT is disabled, when every package folder's ``__pycache__`` is
writable (normal installs: the cache stays in the package, where :mod:`exgs_core.warmup` looks for it) or when
numba's own user-wide directory is writable (numba falls back to it by itself). Only when both are unwritable
does it set ``NUMBA_CACHE_DIR`` to a private folder under the temporary directory
(``<tmp>/exgs-numba-cache-<uid>``, mode 0700, reused by later processes so the kernels compile only once; a folder
of that name that is not ours, not private or a symlink is never used, a fresh ``mkdtemp`` one is instead), and
says so in one warning. The writability tests are numba's own (create the folder, then a temporary file in it),
so the decision matches what numba will find. numba itself is not imported.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
import tempfile
import warnings

__all__ = ["ensure_numba_cache"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_PREFIX = "exgs-numba-cache-"


def _writable(path: str) -> bool:
    """What numba's cache locators require of a folder: it can be created and a file written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except (OSError, ValueError):
        return False


def _package_dirs() -> list[str]:
    """The exgs_core package and its subpackages (folders with an ``__init__.py``)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(_PACKAGE):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        if "__init__.py" in filenames:
            out.append(dirpath)
    return out


def _numba_user_cache_dir() -> str | None:
    """numba's user-wide cache folder, computed by numba's own ``appdirs`` module, loaded on its own so that
    ``import exgs_core`` does not import numba. None when numba is not installed."""
    mod = sys.modules.get("numba.misc.appdirs")
    if mod is None:
        try:
            spec = importlib.util.find_spec("numba")
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        path = os.path.join(list(spec.submodule_search_locations)[0], "misc", "appdirs.py")
        try:
            sub = importlib.util.spec_from_file_location("_exgs_numba_appdirs", path)
            if sub is None or sub.loader is None:
                return ""
            mod = importlib.util.module_from_spec(sub)
            sub.loader.exec_module(mod)
        except Exception:  # noqa: BLE001 - numba's layout changed: treat as "unknown", i.e. unwritable
            return ""
    try:
        return mod.AppDirs(appname="numba", appauthor=False).user_cache_dir
    except Exception:  # noqa: BLE001
        return ""


def _private_dir() -> str:
    """A folder only this user can write: ``<tmp>/exgs-numba-cache-<uid>`` when it is ours (created now, or a
    real directory owned by us with no group/other permissions), else a fresh ``mkdtemp`` folder."""
    tmp = tempfile.gettempdir()
    if os.name == "posix":
        path = os.path.join(tmp, f"{_PREFIX}{os.geteuid()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return tempfile.mkdtemp(prefix=_PREFIX)
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077 and _writable(path):
                return path
        except OSError:
            pass
        return tempfile.mkdtemp(prefix=_PREFIX)
    path = os.path.join(tmp, _PREFIX.rstrip("-"))  # Windows: the temporary directory is per user already
    return path if _writable(path) else tempfile.mkdtemp(prefix=_PREFIX)


def ensure_numba_cache() -> str | None:
    """Point numba at a private cache folder when it could cache exgs_core's kernels nowhere else (see the module
    docstring). Returns the folder it set ``NUMBA_CACHE_DIR`` to, or None when nothing was changed."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    if os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
        return None
    if all(_writable(os.path.join(d, "__pycache__")) for d in _package_dirs()):
        return None
    user = _numba_user_cache_dir()
    if user is None:  # numba is not installed: nothing will be cached
        return None
    if user and _writable(user):
        return None
    try:
        path = _private_dir()
    except OSError as e:
        warnings.warn(
            f"exgs: numba cannot cache compiled kernels: {_PACKAGE} and {user or 'its user cache'} are "
            f"read-only and no temporary folder is writable ({e}); set NUMBA_CACHE_DIR to a writable "
            "folder",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    os.environ["NUMBA_CACHE_DIR"] = path
    config = sys.modules.get("numba.core.config")
    if config is not None and hasattr(config, "reload_config"):  # numba already imported: make it see the change
        config.reload_config()
    warnings.warn(
        f"exgs: {_PACKAGE} and numba's cache {user or '(unknown)'} are not writable; compiled kernels are "
        f"cached in {path} (NUMBA_CACHE_DIR)",
        UserWarning,
        stacklevel=3,
    )
    return path
