"""The transformers a BiEncoder makes: query encoder, document encoder and text scorer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_shallow._equality import EqualByArguments
from pyterrier_shallow._frames import require_columns, require_frame, require_str_ids, require_texts, with_scores
from pyterrier_shallow._records import FrameTransformer
from pyterrier_shallow.anchor import Anchor, anchor_inputs, apply_anchor, resolve_anchor
from pyterrier_shallow.dense.bi_encoder import BiEncoder


class QueryEncoder(EqualByArguments, FrameTransformer):
    """Adds ``query_vec`` (one float32 vector a row) to a frame with ``query``; each distinct query is encoded once.

    Args:
        bi_encoder: The model.
        verbose: Show a progress bar (``None``: the model's setting).
    """

    schematic = {"label": "QueryEncoder", "help_url": None}

    def __init__(self, bi_encoder: BiEncoder, *, verbose: bool | None = None):
        self.bi_encoder = bi_encoder
        self.verbose = bi_encoder.verbose if verbose is None else verbose

    def __repr__(self) -> str:
        return f"{self.bi_encoder!r}.query_encoder()"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns ``inp`` with a ``query_vec`` column."""
        require_columns(inp, ["query"], who="QueryEncoder")
        if len(inp) == 0:
            return inp.assign(query_vec=pd.Series([], dtype=object, index=inp.index))
        require_str_ids(inp, ["qid"], who="QueryEncoder")
        require_texts(inp, "query", who="QueryEncoder", allow_empty=False)
        return inp.assign(query_vec=encode_column(inp["query"], self.bi_encoder.encode_queries, self.verbose))


class DocEncoder(EqualByArguments, FrameTransformer):
    """Adds ``doc_vec`` (one float32 vector a row) to a frame with the text field; each distinct text is encoded once.

    Args:
        bi_encoder: The model.
        verbose: Show a progress bar (``None``: the model's setting).
    """

    schematic = {"label": "DocEncoder", "help_url": None}

    def __init__(self, bi_encoder: BiEncoder, *, verbose: bool | None = None):
        self.bi_encoder = bi_encoder
        self.verbose = bi_encoder.verbose if verbose is None else verbose

    def __repr__(self) -> str:
        return f"{self.bi_encoder!r}.doc_encoder()"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns ``inp`` with a ``doc_vec`` column."""
        field = self.bi_encoder.text_field
        require_columns(inp, [field], who="DocEncoder")
        if len(inp) == 0:
            return inp.assign(doc_vec=pd.Series([], dtype=object, index=inp.index))
        require_str_ids(inp, ["docno"], who="DocEncoder")
        require_texts(inp, field, who="DocEncoder", allow_empty=True)
        return inp.assign(doc_vec=encode_column(inp[field], self.bi_encoder.encode_docs, self.verbose))


class TextScorer(EqualByArguments, FrameTransformer):
    """Scores each row of a result frame by the dot product of its query and document vectors, and re-ranks.

    Uses ``query_vec`` and ``doc_vec`` when the frame has them, and otherwise encodes ``query`` and the text field
    (each distinct text once, queries of all qids batched together).

    Args:
        bi_encoder: The model.
        anchor: Mixes the first stage's ``score`` into the cosine (see :mod:`pyterrier_shallow.anchor`): ``True``
            with equal weights (the untrained hybrid of the first stage and the cosine), an
            :class:`~pyterrier_shallow.Anchor` with its own, ``None`` or ``False`` not at all.
        verbose: Show progress bars (``None``: the model's setting).
    """

    schematic = {"label": "BiScorer", "help_url": None}

    def __init__(self, bi_encoder: BiEncoder, *, anchor: Anchor | bool | None = None, verbose: bool | None = None):
        self.bi_encoder = bi_encoder
        self.anchor = anchor
        self.anchoring = resolve_anchor(anchor)
        self.verbose = bi_encoder.verbose if verbose is None else verbose

    def __repr__(self) -> str:
        anchored = "" if self.anchor in (None, False) else f"anchor={self.anchor!r}"
        return f"{self.bi_encoder!r}.text_scorer({anchored})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Returns ``inp`` with float32 ``score`` and a fresh ``rank``."""
        field = self.bi_encoder.text_field
        query_side, doc_side = _require_sides(inp, field)
        if len(inp) == 0:
            return with_scores(inp, np.empty(0, dtype=np.float32))
        require_str_ids(inp, who="TextScorer")
        first_stage = anchor_inputs(inp, self.anchoring, who="TextScorer")
        queries = self._side(inp, query_side, self.bi_encoder.encode_queries, allow_empty=False)
        docs = self._side(inp, doc_side, self.bi_encoder.encode_docs, allow_empty=True)
        if queries.shape[1] != docs.shape[1]:
            raise ValueError(f"TextScorer: query vectors have {queries.shape[1]} dimensions, documents {docs.shape[1]}")
        scores = np.einsum("ij,ij->i", queries, docs)
        return with_scores(inp, apply_anchor(self.anchoring, inp, first_stage, scores))

    def _side(self, inp: pd.DataFrame, column: str, encode, *, allow_empty: bool) -> np.ndarray:
        if column.endswith("_vec"):
            return stack_vectors(inp[column], who="TextScorer", column=column)
        require_texts(inp, column, who="TextScorer", allow_empty=allow_empty)
        return np.stack(encode_column(inp[column], encode, self.verbose)) if len(inp) else np.empty((0, 0))


def encode_column(texts: pd.Series, encode, verbose: bool) -> list[np.ndarray]:
    """Encodes each distinct text of ``texts`` once and returns one vector per row."""
    codes, unique = pd.factorize(texts, sort=False)
    vectors = encode(list(unique), verbose=verbose)
    return list(vectors[codes])


def stack_vectors(values: pd.Series, *, who: str, column: str) -> np.ndarray:
    """Stacks a column of vectors into a float32 matrix, with a clear error for missing or ragged vectors."""
    bad = values.map(lambda value: not isinstance(value, np.ndarray) or value.ndim != 1)
    if bad.any():
        raise ValueError(f"{who}: {int(bad.sum())} row(s) of {column!r} are not 1-dimensional numpy vectors")
    sizes = values.map(len)
    if sizes.nunique() > 1:
        raise ValueError(f"{who}: {column!r} holds vectors of different sizes {sorted(sizes.unique())[:5]}")
    return np.stack(values.to_numpy()).astype(np.float32, copy=False)


def _require_sides(inp: pd.DataFrame, field: str) -> tuple[str, str]:
    """Checks the columns a text scorer needs and says where each side comes from (vectors first)."""
    require_frame(inp, ["qid", "docno", "query", field], who="TextScorer")
    options = [
        ("query", field),
        ("query_vec", field),
        ("query", "doc_vec"),
        ("query_vec", "doc_vec"),
    ]
    found = [option for option in options if set(option) <= set(inp.columns)]
    if not found:
        try:
            with pt.validate.any(inp) as check:
                for query_side, doc_side in options:
                    check.columns(includes=["qid", "docno", query_side, doc_side], mode=f"{query_side}+{doc_side}")
        except pt.validate.InputValidationError as err:
            hint = ""
            if field not in inp.columns and "doc_vec" not in inp.columns:
                hint = " Attach document text first, e.g. `retriever >> pyterrier_shallow.TextLoader(dataset) >> ...`."
            message = (
                f"TextScorer needs 'query' or 'query_vec', and {field!r} or 'doc_vec', beside 'qid' and 'docno'; "
                f"the input has only {list(inp.columns)}.{hint}"
            )
            raise pt.validate.InputValidationError(message, err.modes) from None
    require_columns(inp, ["qid", "docno"], who="TextScorer")
    query_side = "query_vec" if "query_vec" in inp.columns else found[0][0]
    doc_side = "doc_vec" if "doc_vec" in inp.columns else found[0][1]
    return query_side, doc_side
