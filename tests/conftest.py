"""Shared fixtures. Tests must pass on a fresh clone: anything under ../shared is optional (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest
from exgs_testpaths import DATA, REPO, SHARED, shared_file  # noqa: F401  (test modules import exgs_testpaths)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
