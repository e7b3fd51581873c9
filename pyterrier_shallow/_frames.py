"""Checks and helpers for the frames that flow between transformers."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyterrier as pt


def require_frame(inp: object, columns: Iterable[str], *, who: str) -> None:
    """Raises a ``TypeError`` for anything but a DataFrame, and a ``ValueError`` for duplicated column names."""
    if not isinstance(inp, pd.DataFrame):
        raise TypeError(
            f"{who} transforms a pandas DataFrame with the column(s) {list(columns)}, but was given a "
            f"{type(inp).__module__}.{type(inp).__qualname__}; build one with pd.DataFrame(...) or pt.new.queries(...)"
        )
    duplicated = sorted({str(name) for name in inp.columns[inp.columns.duplicated()]})
    if duplicated:
        raise ValueError(f"{who}: the input has duplicated column name(s) {duplicated}; keep one of each")


def require_columns(inp: pd.DataFrame, columns: Iterable[str], *, who: str) -> None:
    """Raises ``pt.validate.InputValidationError`` (a ``KeyError``) naming every missing column and how to get it."""
    columns = list(columns)
    require_frame(inp, columns, who=who)
    try:
        pt.validate.columns(inp, includes=columns)
    except pt.validate.InputValidationError as err:
        missing = [column for column in columns if column not in inp.columns]
        hint = ""
        if "text" in missing:
            hint = " Attach document text first, e.g. `retriever >> pyterrier_shallow.TextLoader(dataset) >> ...`."
        if "query" in missing:
            hint += " Result frames from a retriever carry `query`; frames built by hand must too."
        message = f"{who} needs the column(s) {missing}, but the input has only {list(inp.columns)}.{hint}"
        raise pt.validate.InputValidationError(message, err.modes) from None


def require_str_ids(inp: pd.DataFrame, columns: Iterable[str] = ("qid", "docno"), *, who: str) -> None:
    """Raises a ``TypeError`` when an id column holds anything but strings (qid and docno are always ``str``)."""
    for column in columns:
        if column not in inp.columns or len(inp) == 0:
            continue
        values = inp[column]
        if pd.api.types.is_string_dtype(values) and values.map(type).eq(str).all():
            continue
        missing = values.isna()
        if missing.any():
            raise TypeError(
                f"{who}: column {column!r} holds {int(missing.sum())} missing value(s) (NaN/None) among "
                f"{len(values)} rows; every {column} must be a str"
            )
        raise TypeError(
            f"{who}: column {column!r} must hold str values (found dtype {values.dtype}); "
            f"convert it with df.astype({{{column!r}: str}})."
        )


def require_texts(inp: pd.DataFrame, column: str, *, who: str, allow_empty: bool) -> None:
    """Raises a ``ValueError`` for missing (NaN/None) or non-string texts, and optionally for empty ones."""
    values = inp[column]
    not_str = ~values.map(lambda value: isinstance(value, str))
    if not_str.any():
        rows = inp.loc[not_str.to_numpy()]
        raise ValueError(
            f"{who}: {int(not_str.sum())} row(s) have a missing or non-string {column!r} "
            f"(first: {_describe(rows.iloc[0])}); fill them (e.g. df[{column!r}].fillna('')) or drop them."
        )
    unencodable = ~values.map(_encodes)
    if unencodable.any():
        rows = inp.loc[unencodable.to_numpy()]
        raise ValueError(
            f"{who}: {int(unencodable.sum())} row(s) have a {column!r} that is not valid Unicode (a lone surrogate; "
            f"first: {_describe(rows.iloc[0])}); repair them, e.g. text.encode('utf-8', 'replace').decode('utf-8')"
        )
    if not allow_empty:
        empty = values.str.strip().eq("")
        if empty.any():
            rows = inp.loc[empty.to_numpy()]
            raise ValueError(
                f"{who}: {int(empty.sum())} row(s) have an empty {column!r} (first: {_describe(rows.iloc[0])})"
            )


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe(row: pd.Series) -> str:
    keys = [key for key in ("qid", "docno") if key in row.index]
    return ", ".join(f"{key}={row[key]!r}" for key in keys) or "row"


def require_numeric(inp: pd.DataFrame, columns: list[str], *, who: str) -> None:
    """Raises ``TypeError`` / ``ValueError`` when one of ``columns`` that ``inp`` has is not numbers, or misses some.

    Columns ``inp`` lacks are not checked (a first stage's ``score`` and ``rank`` are optional inputs).
    """
    for column in columns:
        if column not in inp.columns:
            continue
        values = inp[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            example = values.iloc[0] if len(values) else None
            raise TypeError(
                f"{who}: column {column!r} must hold numbers, but it has dtype {values.dtype} (first value "
                f"{example!r}); convert it with pd.to_numeric or drop it"
            )
        missing = values.isna()
        if missing.any():
            row = inp.loc[missing.to_numpy()].iloc[0]
            raise ValueError(
                f"{who}: column {column!r} misses {int(missing.sum())} value(s), the first at {_describe(row)}"
            )


def with_scores(inp: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """Returns a copy of ``inp`` with float32 ``score`` and a fresh ``rank`` (per query, best first)."""
    out = inp.copy()
    out["score"] = np.asarray(scores, dtype=np.float32)
    if "rank" in out.columns:
        out = out.drop(columns=["rank"])
    return add_ranks(out)


def add_ranks(frame: pd.DataFrame) -> pd.DataFrame:
    """Sets ``rank`` in place: 0 for each query's best ``score``, ties in row order (as ``pt.model.add_ranks``)."""
    if len(frame) == 0:
        frame["rank"] = pd.Series(index=frame.index, dtype=np.int64)
        return frame
    ranks = frame.groupby("qid", sort=False)["score"].rank(ascending=False, method="first")
    frame["rank"] = ranks.to_numpy(dtype=np.int64) - 1
    return frame
