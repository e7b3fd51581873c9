"""Finding the folder that holds the local test collections."""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

ENV_VAR = "PYTERRIER_SHALLOW_DATA"
"""Environment variable naming the folder of local collections (one sub-folder per collection)."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Returns the folder of local collections.

    Looks, in order, at ``root``, at the ``PYTERRIER_SHALLOW_DATA`` environment variable, and at a ``shared/data``
    folder in the current directory or any directory above it.

    Args:
        root: An explicit folder; it must exist.

    Raises:
        FileNotFoundError: When the folder cannot be found; the message lists every place looked at.
    """
    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"collection folder {str(path)!r} (given as root=) does not exist")
        return path
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"collection folder {str(path)!r} (from ${ENV_VAR}) does not exist")
        return path
    cwd = Path.cwd()
    candidates = [folder / "shared" / "data" for folder in (cwd, *cwd.parents)]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = "\n  ".join(str(candidate) for candidate in candidates)
    raise FileNotFoundError(
        f"no collection folder found: root= was not given, ${ENV_VAR} is not set, and none of these exist:\n  {looked}"
        f"\nPass root='/path/to/data' or set {ENV_VAR}."
    )


def collection_dir(
    root: str | os.PathLike | None, name: str, required: Iterable[str], *, bundled: bool = False
) -> Path:
    """Returns the folder of collection ``name`` and checks that it holds the ``required`` files.

    ``root`` may be the folder of all collections (the collection is then its sub-folder ``name``) or the
    collection's own folder. With ``bundled`` and no ``root``, the copy shipped inside the package is used.
    """
    required = list(required)
    if root is None and bundled:
        folder = Path(str(resources.files("pyterrier_shallow") / "data" / name))
    else:
        base = data_root(root)
        folder = base / name
        if not folder.is_dir() and root is not None and all(_exists(base / file) for file in required):
            folder = base
    if not folder.is_dir():
        raise FileNotFoundError(f"{name}: collection folder {str(folder)!r} does not exist")
    missing = [file for file in required if not _exists(folder / file)]
    if missing:
        raise FileNotFoundError(f"{name}: {str(folder)!r} lacks the file(s) {missing}")
    return folder


def _exists(path: Path) -> bool:
    """Whether ``path`` or its gzipped form ``path.gz`` is a file."""
    return path.is_file() or path.with_name(path.name + ".gz").is_file()
