"""Atomic writes of files and directories, and stable digests for cache keys."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def usual_permissions(*paths: str | os.PathLike) -> None:
    """Gives files or folders made by ``tempfile`` (private: 0600 / 0700) the permissions ``open`` would give them."""
    umask = os.umask(0)  # read once: the process's umask is 0 until it is set back
    os.umask(umask)
    for path in paths:
        os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~umask)


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Has ``write(temporary)`` write a file beside ``path``, then renames it into place with the usual permissions.

    An interruption leaves ``path`` as it was (and no temporary file behind).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    try:
        write(Path(tmp))
        usual_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder, then renames it into place."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())

    atomic_write_with(path, write)


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    """Writes ``payload`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode("utf8"))


def atomic_write_dir(path: str | os.PathLike, fill: Callable[[Path], None]) -> None:
    """Fills a temporary sibling folder with ``fill(folder)`` and then swaps it in place of ``path``.

    The previous folder, if any, is kept as ``<path>.old`` until the new one is in place, so that an interruption
    leaves either the old or the new folder readable (see :func:`readable_dir`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = path.with_name(path.name + ".old")
    try:
        fill(tmp)
        usual_permissions(tmp, *tmp.rglob("*"))  # mkdtemp makes the folder private, and some writers their files
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def readable_dir(path: str | os.PathLike) -> Path | None:
    """Returns ``path`` if it exists, else the ``<path>.old`` copy left by an interrupted swap, else ``None``."""
    path = Path(path)
    if path.is_dir():
        return path
    old = path.with_name(path.name + ".old")
    return old if old.is_dir() else None


def digest(*parts: Any) -> str:
    """Returns a short, stable hex digest of JSON-serialisable parts."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(json.dumps(part, sort_keys=True, default=str).encode("utf8"))
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]
