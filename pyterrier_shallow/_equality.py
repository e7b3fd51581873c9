"""Equality by constructor arguments, for the transformers that factories make.

Two made from the same arguments (``model.text_scorer()`` twice, ``index.retriever(model)`` twice) are equal and hash
alike, so that PyTerrier's caching and pipeline optimisation can tell that they compute the same thing.
"""

from __future__ import annotations

import inspect
from typing import Any

_IGNORED = frozenset({"verbose"})
"""Arguments that change how a transformer reports, not what it returns."""


class EqualByArguments:
    """Mixin: equal when of the same type with equal constructor arguments (``verbose`` aside)."""

    def _arguments(self) -> tuple[tuple[str, Any], ...]:
        names = list(inspect.signature(type(self).__init__).parameters)[1:]
        return tuple((name, getattr(self, name)) for name in names if name not in _IGNORED)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._arguments() == other._arguments()

    def __hash__(self) -> int:
        return hash((type(self).__qualname__, self._arguments()))
