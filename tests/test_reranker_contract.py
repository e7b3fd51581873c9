"""The transformer contract shared by every pair reranker: CrossEncoder and SparseCrossEncoder alike."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from _ranking import assert_fresh_ranks

import pyterrier_shallow as pts
from pyterrier_shallow.sparse import SparseCrossEncoder

RERANKERS = {
    "CrossEncoder": lambda checkpoint, **options: pts.CrossEncoder(checkpoint, **options),
    "SparseCrossEncoder": lambda checkpoint, **options: SparseCrossEncoder(checkpoint, window=4, **options),
}


@pytest.fixture(scope="module", params=sorted(RERANKERS))
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def reranker(kind, shallow_checkpoint):
    return RERANKERS[kind](shallow_checkpoint, max_length=192, batch_size=16, warn_truncation=False)


def test_output_contract(reranker, nfcorpus_pairs):
    frame = nfcorpus_pairs.assign(extra=range(len(nfcorpus_pairs)), rank=0)
    out = reranker(frame)
    assert list(out.columns[: len(frame.columns) - 1]) == [c for c in frame.columns if c != "rank"]
    assert out["score"].dtype == np.float32
    assert (out["extra"].to_numpy() == frame["extra"].to_numpy()).all()
    assert_fresh_ranks(out)


def test_duplicate_docnos_are_all_kept(reranker, nfcorpus_pairs):
    frame = pd.concat([nfcorpus_pairs.head(4), nfcorpus_pairs.head(2)], ignore_index=True)
    out = reranker(frame)
    assert len(out) == 6
    np.testing.assert_allclose(out["score"].iloc[4:].to_numpy(), out["score"].iloc[:2].to_numpy(), atol=1e-5)


def test_empty_frame(reranker):
    out = reranker(pd.DataFrame(columns=["qid", "query", "docno", "text"]))
    assert len(out) == 0
    assert {"score", "rank"} <= set(out.columns)


def test_empty_text_is_scored(reranker, nfcorpus_pairs):
    frame = nfcorpus_pairs.head(2).copy()
    frame.loc[frame.index[0], "text"] = ""
    assert np.isfinite(reranker(frame)["score"]).all()


@pytest.mark.parametrize("missing", ["text", "query"])
def test_missing_column_is_named(reranker, nfcorpus_pairs, missing):
    with pytest.raises(KeyError, match=missing):
        reranker(nfcorpus_pairs.drop(columns=[missing]))


def test_missing_text_value(reranker, nfcorpus_pairs):
    frame = nfcorpus_pairs.head(3).astype({"text": object})
    frame.loc[frame.index[1], "text"] = None
    with pytest.raises(ValueError, match="missing or non-string 'text'"):
        reranker(frame)


def test_empty_query(reranker, nfcorpus_pairs):
    with pytest.raises(ValueError, match="empty 'query'"):
        reranker(nfcorpus_pairs.head(2).assign(query="  "))


def test_numeric_ids_are_rejected(reranker, nfcorpus_pairs):
    with pytest.raises(TypeError, match="'qid' must hold str"):
        reranker(nfcorpus_pairs.head(2).assign(qid=[1, 2]))


def test_pickle_round_trip_reloads_the_model(kind, shallow_checkpoint, nfcorpus_pairs):
    scorer = RERANKERS[kind](shallow_checkpoint, max_length=192, warn_truncation=False)
    frame = nfcorpus_pairs.head(5)
    before = scorer(frame)["score"].to_numpy()
    payload = pickle.dumps(scorer)
    assert len(payload) < 100_000  # the weights are not pickled: the worker reloads them
    clone = pickle.loads(payload)
    assert clone._network is None
    np.testing.assert_allclose(clone(frame)["score"].to_numpy(), before, atol=1e-6)


def test_verbose_progress_bar(kind, shallow_checkpoint, nfcorpus_pairs, capsys):
    RERANKERS[kind](shallow_checkpoint, max_length=192, verbose=True, warn_truncation=False)(nfcorpus_pairs.head(4))
    assert kind in capsys.readouterr().err


def test_composes_in_a_pipeline(reranker, nfcorpus_pairs):
    pipeline = reranker % 3
    out = pipeline(nfcorpus_pairs)
    assert out.groupby("qid").size().max() == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(pipeline, pt.Transformer)


def _minilm_reranker(kind: str) -> pt.Transformer:
    from pyterrier_shallow._hf import minilm_path

    return RERANKERS[kind](minilm_path(), max_length=128, warn_truncation=False)


class TestCrossEncoderContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        return _minilm_reranker("CrossEncoder")


class TestSparseCrossEncoderContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        return _minilm_reranker("SparseCrossEncoder")
