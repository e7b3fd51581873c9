"""The ranking half of the transformer contract, shared by the tests of every scorer."""

import pandas as pd


def assert_fresh_ranks(frame: pd.DataFrame) -> None:
    """Asserts that each query's ``rank`` runs 0..n-1 and that ``score`` never rises as ``rank`` grows."""
    for _, group in frame.groupby("qid"):
        ordered = group.sort_values("rank")
        assert ordered["rank"].tolist() == list(range(len(group)))
        assert ordered["score"].is_monotonic_decreasing
