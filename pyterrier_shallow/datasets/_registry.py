"""Looking collections up by name."""

from __future__ import annotations

import os

from pyterrier_shallow.datasets._dataset import LocalDataset
from pyterrier_shallow.datasets.beir import beir
from pyterrier_shallow.datasets.nfcorpus import nfcorpus
from pyterrier_shallow.datasets.smart import cisi, cranfield
from pyterrier_shallow.datasets.trec_dl import trec_dl
from pyterrier_shallow.datasets.vaswani import vaswani
from pyterrier_shallow.datasets.wikiqa import wikiqa

_LOADERS = {
    "vaswani": vaswani,
    "nfcorpus": nfcorpus,
    "cranfield": cranfield,
    "cisi": cisi,
    "wikiqa": wikiqa,
    "trec-dl": trec_dl,
}

NAMES = (*_LOADERS, "beir:<path>")
"""The names :func:`get` accepts."""


def get(name: str, root: str | os.PathLike | None = None) -> LocalDataset:
    """Returns a local collection by name.

    Names: ``"vaswani"``, ``"nfcorpus"``, ``"cranfield"``, ``"cisi"``, ``"wikiqa"``, ``"trec-dl"``, or
    ``"beir:<path>"`` for a folder in the BEIR layout.

    Args:
        name: The collection (case-insensitive; ``_`` may stand for ``-``).
        root: The folder of collections (see :func:`data_root`); ignored for ``beir:``.

    Raises:
        ValueError: For an unknown name.
    """
    if name.lower().startswith("beir:"):
        path = name[len("beir:") :]
        if not path:
            raise ValueError("beir: needs a folder, as in 'beir:/path/to/nfcorpus'")
        return beir(path)
    loader = _LOADERS.get(name.lower().replace("_", "-"))
    if loader is None:
        raise ValueError(f"unknown collection {name!r}; known: {list(NAMES)}")
    return loader(root)
