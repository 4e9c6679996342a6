"""Shared pytest set-up: figures render off-screen, and every test starts from the same seed."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from companion.device import seed_everything  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    seed_everything(0)
    yield
