"""The base of every transformer here: a clear error when it is given something other than a frame or records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pyterrier as pt


def describe_input(inp: object) -> str:
    """Names what a transformer was given, e.g. ``"a dict with the keys ['qid', 'query']"``."""
    if isinstance(inp, Mapping):
        return f"a {type(inp).__name__} with the keys {list(inp)[:8]}"
    if isinstance(inp, (str, bytes)):
        text = inp if len(inp) <= 40 else inp[:37] + "..."
        return f"a bare {type(inp).__name__} {text!r}"
    if isinstance(inp, pd.Series):
        return f"a pandas Series of {len(inp)} value(s) (name {inp.name!r})"
    if isinstance(inp, np.ndarray):
        return f"a numpy array of shape {inp.shape}"
    return f"a {type(inp).__module__}.{type(inp).__qualname__}"


class FrameTransformer(pt.Transformer):
    """A ``pt.Transformer`` whose iterable input must be dict records; anything else is a clear ``TypeError``.

    PyTerrier runs ``transform_iter`` for any input that is not a DataFrame, which would turn a dict of lists, a
    string or a Series into a frame with a single column ``0``; this names what was given and how to make a frame.
    """

    def transform_iter(self, inp: Iterable[dict]) -> list[dict]:
        """Runs :meth:`transform` over a list (or other iterable) of dict records and returns records."""
        who = type(self).__name__
        if isinstance(inp, (Mapping, str, bytes, pd.Series, np.ndarray)) or not isinstance(inp, Iterable):
            raise TypeError(
                f"{who} transforms a pandas DataFrame (or a list of dict records, one per row), but was given "
                f"{describe_input(inp)}; make a frame with pd.DataFrame(...), e.g. pd.DataFrame({{'qid': ['1'], "
                f"'query': ['a query']}}), or pt.new.queries(...)"
            )
        records = list(inp)
        bad = next((record for record in records if not isinstance(record, Mapping)), None)
        if bad is not None:
            raise TypeError(
                f"{who} transforms a list of dict records (one per row), but one element is {describe_input(bad)}; "
                f"make a frame with pd.DataFrame(...) or pass dicts such as {{'qid': '1', 'query': 'a query'}}"
            )
        return self.transform(pd.DataFrame(records)).to_dict(orient="records")
