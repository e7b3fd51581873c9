"""Query text that every first-stage query parser accepts, and the topic frames built from it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import pandas as pd

_WORD = re.compile(r"[^\W_]+")


def safe_query(text: str) -> str:
    """Returns ``text`` reduced to its words and numbers, separated by single spaces.

    Terrier's query language rejects ``'``, ``?``, ``/``, ``:``, braces, unbalanced quotes and more, and PISA fails on
    NUL and other control characters. Keeping only runs of letters and digits (any script, after NFKC
    normalisation) leaves a query that both accept and that tokenises to the same terms in PISA.

    Example::

        safe_query("What’s Driving America’s Obesity Problem?")  # 'What s Driving America s Obesity Problem'
    """
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text)))


def topics_frame(pairs: Iterable[tuple[str, str]], *, source: str) -> pd.DataFrame:
    """Builds a topic frame from ``(qid, query text)`` pairs.

    The frame has ``qid``, ``query`` (made safe by :func:`safe_query`) and, when any query changed, ``query_0``
    with the original text.

    Args:
        pairs: The query ids (converted to ``str``) and texts.
        source: What the topics were read from, for error messages.

    Raises:
        ValueError: On no topics, duplicate qids, or a missing or empty query.
    """
    frame = pd.DataFrame([(str(qid), text) for qid, text in pairs], columns=["qid", "query_0"])
    if frame.empty:
        raise ValueError(f"{source}: no topics found")
    duplicated = frame["qid"].duplicated()
    if duplicated.any():
        raise ValueError(f"{source}: duplicate qid(s) {frame.loc[duplicated, 'qid'].unique()[:5].tolist()}")
    bad = ~frame["query_0"].map(lambda text: isinstance(text, str) and bool(text.strip()))
    if bad.any():
        raise ValueError(f"{source}: missing or empty query for qid(s) {frame.loc[bad, 'qid'].tolist()[:5]}")
    frame["query"] = frame["query_0"].map(safe_query)
    columns = ["qid", "query", "query_0"] if frame["query"].ne(frame["query_0"]).any() else ["qid", "query"]
    return frame[columns].astype("str")
