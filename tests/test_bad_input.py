"""Bad input gets a clear error naming what is wrong, at every stage that scores or attaches text."""

import pandas as pd
import pytest

import pyterrier_shallow as pts
from pyterrier_shallow.sparse import SparseCrossEncoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = {"d1": "glacier caves form in ice", "d2": "statins and breast cancer survival"}


@pytest.fixture(scope="module", params=["CrossEncoder", "SparseCrossEncoder", "BiEncoder", "TextLoader"])
def stage(request, shallow_checkpoint):
    if request.param == "CrossEncoder":
        return pts.CrossEncoder(shallow_checkpoint, warn_truncation=False)
    if request.param == "SparseCrossEncoder":
        return SparseCrossEncoder(shallow_checkpoint, window=4, warn_truncation=False)
    if request.param == "BiEncoder":
        return pts.BiEncoder(warn_truncation=False).text_scorer()
    return pts.TextLoader(DOCS)


def _frame(stage) -> pd.DataFrame:
    frame = pd.DataFrame({"qid": ["1", "1"], "query": ["glacier cave", "glacier cave"], "docno": ["d1", "d2"]})
    return frame if isinstance(stage, pts.TextLoader) else frame.assign(text=frame["docno"].map(DOCS))


@pytest.mark.parametrize("given", [{"qid": ["1"], "docno": ["d1"]}, pd.Series(["1"]), "qid=1"])
def test_something_that_is_not_a_frame_is_named(stage, given):
    with pytest.raises(TypeError, match="DataFrame.*given a (builtins.dict|pandas.*Series|builtins.str)"):
        stage.transform(given)


def test_duplicated_columns_are_named(stage):
    frame = _frame(stage)
    doubled = pd.concat([frame, frame[["docno"]]], axis=1)
    with pytest.raises(ValueError, match=r"duplicated column name\(s\) \['docno'\]"):
        stage.transform(doubled)


def test_missing_ids_in_a_string_column_are_called_missing(stage):
    frame = _frame(stage).astype({"docno": "string"})
    frame.loc[0, "docno"] = pd.NA
    with pytest.raises(TypeError, match=r"'docno' holds 1 missing value"):
        stage.transform(frame)


def test_a_lone_surrogate_is_rejected_by_row(stage):
    if isinstance(stage, pts.TextLoader):
        pytest.skip("TextLoader attaches texts; it does not read them")
    frame = _frame(stage)
    frame.loc[1, "text"] = "bad \ud800 surrogate"
    with pytest.raises(ValueError, match=r"1 row\(s\) have a 'text' that is not valid Unicode.*docno='d2'"):
        stage.transform(frame)


@pytest.mark.parametrize(
    ("given", "named"),
    [({"qid": ["1"], "docno": ["d1"]}, r"a dict with the keys \['qid', 'docno'\]"),
     (pd.Series(["1"]), "a pandas Series"), ("qid=1", "a bare str 'qid=1'"), (["qid=1"], "one element is a bare str")],
)
def test_calling_a_stage_on_something_that_is_not_a_frame_says_what_it_was_given(stage, given, named):
    """Called as PyTerrier calls stages (``stage(inp)``), not only through ``transform``."""
    with pytest.raises(TypeError, match=f"{type(stage).__name__} transforms a .*{named}.*pd.DataFrame"):
        stage(given)


def test_every_stage_kind_names_what_it_was_given(tmp_path):
    from pyterrier_shallow.bm25 import bm25
    from pyterrier_shallow.budget import BudgetedReranker

    retriever = bm25(pts.datasets.vaswani(), tmp_path / "bm25")
    stages = [retriever, pts.BiEncoder().query_encoder(), pts.PolyEncoder().text_scorer(),
              BudgetedReranker(pts.CrossEncoder(), budget_ms=50), pts.ScoreFusion(retriever, retriever)]
    for stage in stages:
        with pytest.raises(TypeError, match="given a dict with the keys"):
            stage({"qid": ["1"], "query": ["glacier"]})
