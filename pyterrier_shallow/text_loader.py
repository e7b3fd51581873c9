"""TextLoader: attaches document text (or any document field) to a result frame by docno."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import pyterrier as pt

from pyterrier_shallow._frames import require_columns, require_str_ids
from pyterrier_shallow._records import FrameTransformer


class TextLoader(FrameTransformer):
    """Adds a document field (``text`` by default) to each row of a result frame, looked up by ``docno``.

    The lookup table is built once, in memory, from a dataset (anything with ``get_corpus_iter()``), an iterable of
    document dicts, a ``docno -> text`` mapping, or a frame with ``docno`` and the field.

    Example::

        pipeline = bm25 % 100 >> TextLoader(dataset) >> CrossEncoder(...)

    Args:
        source: Where the documents come from (see above).
        field: The document field to attach.
        overwrite: Replace the column when the input already has it (otherwise that is an error).
        verbose: Show a progress bar while reading the corpus.
    """

    schematic = {"label": "TextLoader", "help_url": None}

    def __init__(
        self,
        source: object,
        field: str = "text",
        *,
        overwrite: bool = False,
        verbose: bool = False,
    ):
        self.field = field
        self.overwrite = overwrite
        self.verbose = verbose
        self.lookup = _build_lookup(source, field, verbose=verbose)
        # read again by pt.inspect to rebuild this loader: a one-shot iterator is replaced by what it gave
        reusable = isinstance(source, (Mapping, pd.DataFrame)) or hasattr(source, "get_corpus_iter")
        self.source = source if reusable else self.lookup

    def __getstate__(self) -> dict:
        # the lookup stands in for the source: it rebuilds the same loader, and a corpus iterator would not pickle
        return {**self.__dict__, "source": self.lookup}

    def __repr__(self) -> str:
        return f"TextLoader({len(self.lookup)} documents, field={self.field!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns ``inp`` with the field attached to each row."""
        require_columns(inp, ["docno"], who="TextLoader")
        if self.field in inp.columns and not self.overwrite:
            raise ValueError(
                f"TextLoader: the input already has a {self.field!r} column; pass overwrite=True to replace it"
            )
        out = inp.copy()
        require_str_ids(out, ["docno"], who="TextLoader")
        values = out["docno"].map(self.lookup)
        unknown = values.isna()
        if unknown.any():
            examples = out.loc[unknown.to_numpy(), "docno"].unique()[:5].tolist()
            raise KeyError(f"TextLoader: {int(unknown.sum())} row(s) have a docno not in the corpus (e.g. {examples})")
        out[self.field] = values.astype(object)
        return out


def _build_lookup(source: object, field: str, *, verbose: bool) -> dict[str, str]:
    if isinstance(source, pd.DataFrame):
        require_columns(source, ["docno", field], who="TextLoader")
        documents: Iterable = source[["docno", field]].to_dict("records")
    elif isinstance(source, Mapping):
        return {str(docno): text for docno, text in source.items()}
    elif hasattr(source, "get_corpus_iter"):
        documents = source.get_corpus_iter()
    else:
        documents = source
    lookup: dict[str, str] = {}
    for document in pt.tqdm(documents, desc="TextLoader", unit="doc", disable=not verbose):
        if field not in document:
            raise KeyError(f"TextLoader: document {document.get('docno')!r} has no {field!r} field")
        lookup[str(document["docno"])] = document[field]
    return lookup
