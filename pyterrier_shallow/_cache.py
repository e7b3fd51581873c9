"""Where indexes and caches are kept between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Returns the folder where indexes are kept between runs (``$PYTERRIER_SHALLOW_CACHE`` or ``~/.cache``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pyterrier_shallow"
    return Path(os.environ.get("PYTERRIER_SHALLOW_CACHE", default))
