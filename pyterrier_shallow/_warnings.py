"""Warnings that point at the user's line.

Between the user's call and the code that warns lie library frames (PyTerrier's pipelines, torch's decorators)
whose number depends on how the transformer was called, so a fixed ``stacklevel`` points into one of them.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

_LIBRARIES = ("pyterrier_shallow", "pyterrier", "pyterrier_alpha", "pyterrier_pisa", "torch", "pandas", "contextlib")


def _library_folders() -> tuple[str, ...]:
    folders = []
    for name in _LIBRARIES:
        module = sys.modules.get(name)
        location = getattr(module, "__file__", None)
        if location:
            folder = Path(location).parent
            folders.append(str(folder if name != "contextlib" else Path(location)))
    return tuple(folders)


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Issues ``message`` attributed to the first caller outside these libraries (or the outermost frame)."""
    folders = _library_folders()
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(folders):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1 if frame is not None else level)


@contextlib.contextmanager
def pipelines_timed_apart() -> Iterator[None]:
    """Silences PyTerrier's advice to share the common start of pipelines (``plan="tree"``) inside the block.

    For experiments whose pipelines start alike on purpose and run apart, so that each one's mean response time
    (``mrt``) is the whole pipeline's.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="There are shared pipeline components", category=UserWarning)
        yield
