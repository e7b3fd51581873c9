"""The shared frame helpers."""

import warnings

import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_shallow._frames import add_ranks


def test_ranks_match_pyterrier_and_break_ties_in_row_order():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "qid": rng.choice(["q1", "q2", "q3"], size=60),
        "docno": [f"d{i}" for i in range(60)],
        "score": rng.integers(0, 5, size=60).astype(np.float32),  # many ties
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTerrier's own helper uses a pandas idiom that newer pandas deprecates
        expected = pt.model.add_ranks(frame.copy())["rank"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = add_ranks(frame.copy())["rank"]
    assert ours.dtype == np.int64
    np.testing.assert_array_equal(ours.to_numpy(), expected.to_numpy())


def test_an_empty_frame_gets_an_int_rank_column():
    empty = add_ranks(pd.DataFrame({"qid": pd.Series([], dtype=object), "score": pd.Series([], dtype=np.float32)}))
    assert list(empty.columns) == ["qid", "score", "rank"]
    assert empty["rank"].dtype == np.int64
