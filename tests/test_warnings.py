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
