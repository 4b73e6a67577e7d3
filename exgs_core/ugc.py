"""Former home of the pruning code, now :mod:`exgs_core.prune`; kept so that existing imports
(``from exgs_core.ugc import Cancelled``) keep working. New code imports from :mod:`exgs_core.prune`."""

from .prune import *  # noqa: F401,F403
from .prune import __all__  # noqa: F401
