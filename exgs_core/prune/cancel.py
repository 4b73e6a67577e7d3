"""Cooperative cancellation and progress callbacks, shared by scoring, :func:`exgs_core.compress.compress` and the
warm-up."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ExgsError

#: ``progress(fraction in [0, 1], stage)``.
Progress = Callable[[float, str], None]


class Cancelled(ExgsError):
    """The caller's cancel callback asked to stop."""


def check_cancel(cancel) -> None:
    """Raise :class:`Cancelled` when ``cancel`` (None, a callable returning True, or an object with ``is_set()``
    such as a ``threading.Event``) says stop."""
    if cancel is not None and (cancel.is_set() if hasattr(cancel, "is_set") else cancel()):
        raise Cancelled("cancelled")
