"""Shared fixtures: the real collections in ``../shared/data`` and small models built from offline weights."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PT_TEST_TRANSFORMER_REPORTS", "0")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PYTERRIER_SHALLOW_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real test collections (``../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test collections not found at {SHARED_DATA}")
    return SHARED_DATA
