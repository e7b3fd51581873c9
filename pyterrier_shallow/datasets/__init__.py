"""Local test collections as PyTerrier datasets: topics, qrels and corpus with the shapes of ``pt.get_dataset``."""

from typing import TYPE_CHECKING

from pyterrier_shallow._lazy import lazy_exports

_EXPORTS = {
    "ENV_VAR": "._root:ENV_VAR",
    "LocalDataset": "._dataset:LocalDataset",
    "NAMES": "._registry:NAMES",
    "Split": "._dataset:Split",
    "beir": ".beir:beir",
    "cisi": ".smart:cisi",
    "cranfield": ".smart:cranfield",
    "data_root": "._root:data_root",
    "get": "._registry:get",
    "nfcorpus": ".nfcorpus:nfcorpus",
    "safe_query": "._query:safe_query",
    "trec_dl": ".trec_dl:trec_dl",
    "vaswani": ".vaswani:vaswani",
    "wikiqa": ".wikiqa:wikiqa",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pyterrier_shallow.datasets._dataset import LocalDataset, Split
    from pyterrier_shallow.datasets._query import safe_query
    from pyterrier_shallow.datasets._registry import NAMES, get
    from pyterrier_shallow.datasets._root import ENV_VAR, data_root
    from pyterrier_shallow.datasets.beir import beir
    from pyterrier_shallow.datasets.nfcorpus import nfcorpus
    from pyterrier_shallow.datasets.smart import cisi, cranfield
    from pyterrier_shallow.datasets.trec_dl import trec_dl
    from pyterrier_shallow.datasets.vaswani import vaswani
    from pyterrier_shallow.datasets.wikiqa import wikiqa

__all__ = [
    "ENV_VAR",
    "NAMES",
    "LocalDataset",
    "Split",
    "beir",
    "cisi",
    "cranfield",
    "data_root",
    "get",
    "nfcorpus",
    "safe_query",
    "trec_dl",
    "vaswani",
    "wikiqa",
]
