"""A folder artifact known by its path: equal, hashed and pickled by path, its contents reopened where unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import pyterrier as pt


class PathArtifact(pt.Artifact):
    """A ``pt.Artifact`` whose identity is its resolved path.

    Subclasses name in ``_REOPENED`` the attributes that cache what was read from disk; a pickle carries them as
    ``None``, so that the copy reads the folder again where it is unpickled. ``meta`` reads ``pt_meta.json`` once,
    after checking that the folder holds the ``_REQUIRED_FILES`` and an artifact of the subclass's type and format
    (``_BUILD_HINT`` tells how to make one).
    """

    ARTIFACT_TYPE: str
    ARTIFACT_FORMAT: str
    META_FILE = "pt_meta.json"
    _REQUIRED_FILES: tuple[str, ...] = ()
    _BUILD_HINT = ""
    _REOPENED: tuple[str, ...] = ()
    _meta: dict | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return Path(self.path).resolve() == Path(other.path).resolve()

    def __hash__(self) -> int:
        return hash((type(self).__name__, str(Path(self.path).resolve())))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(dict.fromkeys(self._REOPENED))
        return state

    @property
    def meta(self) -> dict:
        """The contents of ``pt_meta.json``, checked for completeness."""
        if self._meta is None:
            self._meta = self._read_meta()
        return self._meta

    def _read_meta(self) -> dict:
        name = type(self).__name__
        if not self.path.exists():
            raise FileNotFoundError(f"no {name} at {self.path}; build one first: {self._BUILD_HINT}")
        if not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} is a file, not a {name} directory")
        missing = [file for file in (self.META_FILE, *self._REQUIRED_FILES) if not (self.path / file).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.path} is not a complete {name} (missing {', '.join(missing)}); it may have been written "
                "half-way by another tool or copied in part. Delete it and build the index again."
            )
        meta = json.loads((self.path / self.META_FILE).read_text(encoding="utf-8"))
        if (meta.get("type"), meta.get("format")) != (self.ARTIFACT_TYPE, self.ARTIFACT_FORMAT):
            raise ValueError(
                f"{self.path} holds a {meta.get('type')}/{meta.get('format')} artifact, not a "
                f"{self.ARTIFACT_TYPE}/{self.ARTIFACT_FORMAT} one"
            )
        return meta
