"""Warnings point at the user's line, however deep in a pipeline they are raised."""

import warnings

import pandas as pd

import pyterrier_shallow as pts


def test_a_truncation_warning_names_the_callers_line_directly_and_through_a_pipeline():
    scorer = pts.BiEncoder(doc_length=4).text_scorer()
    frame = pd.DataFrame({"qid": ["1"], "docno": ["d"], "query": ["a b"], "text": ["one two three four five six"]})
    pipeline = pts.TextLoader({"d": "one two three four five six"}) >> scorer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scorer(frame)
        pipeline(frame.drop(columns=["text"]))
    assert [warning.filename for warning in caught] == [__file__, __file__]
    assert all("truncated" in str(warning.message) for warning in caught)


def test_the_bm25_stage_warns_at_the_callers_line_inside_a_pipeline(tmp_path):
    from pyterrier_shallow import datasets
    from pyterrier_shallow.bm25 import bm25

    vaswani = datasets.vaswani()
    pipeline = bm25(vaswani, tmp_path / "bm25") % 5 >> pts.TextLoader(vaswani)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline(pd.DataFrame({"qid": ["1"], "query": ["zzqx"]}))
    assert [warning.filename for warning in caught] == [__file__]
    assert "matched no document" in str(caught[0].message)
