"""Shared pieces of the budget tests: a BM25 first stage and candidates on the bundled Vaswani collection."""

import pyterrier_shallow as pts
from pyterrier_shallow.bm25 import bm25


def vaswani_stage(index_dir, num_results=50):
    """Returns the Vaswani dataset, its BM25 retriever (built in ``index_dir``) and a TextLoader."""
    dataset = pts.datasets.vaswani()
    return dataset, bm25(dataset, index_dir, num_results=num_results), pts.TextLoader(dataset)
