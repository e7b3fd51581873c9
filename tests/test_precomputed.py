"""Precomputed document states: the index, and a reranker that scores as the full gated cross-encoder.

The model is the shipped 3-layer cross-encoder with reading the query confined to its top layers (runs offline,
without ``../shared``); the documents and queries are the repository's real NFCorpus excerpt.
"""

import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
import torch
from _ranking import assert_fresh_ranks

from pyterrier_shallow import Anchor, CrossEncoder
from pyterrier_shallow._hf import DEFAULT_CROSS_ENCODER_DIR
from pyterrier_shallow.gated import gated_from_bi_encoder, load_delta
from pyterrier_shallow.precomputed import DocStateIndex, PrecomputedCrossEncoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "beir_nfcorpus"


def confined(cross_layers: int):
    model, tokenizer = load_delta(DEFAULT_CROSS_ENCODER_DIR)
    model.confine_cross_attention(cross_layers)
    return model, tokenizer


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    docs = pd.read_json(FIXTURES / "corpus.jsonl", lines=True)
    return [{"docno": str(row["_id"]), "text": f"{row['title']} {row['text']}".strip()} for _, row in docs.iterrows()]


@pytest.fixture(scope="module")
def pairs(corpus) -> pd.DataFrame:
    queries = pd.read_json(FIXTURES / "queries.jsonl", lines=True).head(3)
    rows = [{"qid": str(query["_id"]), "query": query["text"], "docno": doc["docno"], "text": doc["text"],
             "score": float(len(doc["text"]) % 17)}
            for _, query in queries.iterrows() for doc in corpus[:12]]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def last_layer():
    return confined(1)


@pytest.fixture(scope="module")
def index(last_layer, corpus, tmp_path_factory) -> DocStateIndex:
    path = tmp_path_factory.mktemp("states") / "index"
    with pytest.warns(UserWarning, match="truncated"):
        return DocStateIndex(path).build(corpus, last_layer, doc_length=96, dtype="float32", verbose=False)


def full_scores(model_pair, frame: pd.DataFrame, doc_length: int = 96) -> pd.DataFrame:
    reranker = CrossEncoder(model_pair, anchor=False, query_length=32, doc_length=doc_length, warn_truncation=False)
    return reranker(frame)


def assert_same_scores(left: pd.DataFrame, right: pd.DataFrame, atol: float) -> None:
    merged = left.merge(right, on=["qid", "docno"], validate="one_to_one")
    np.testing.assert_allclose(merged["score_x"], merged["score_y"], atol=atol, rtol=0)


@pytest.mark.parametrize("cross_layers", [1, 2, 3])
def test_scores_equal_the_full_model(cross_layers, corpus, pairs, tmp_path):
    model_pair = confined(cross_layers)
    index = DocStateIndex(tmp_path / "index")
    with pytest.warns(UserWarning, match="truncated"):
        index.build(corpus, model_pair, doc_length=96, dtype="float32", verbose=False)
    assert index.meta["split_layer"] == 3 - cross_layers
    precomputed = PrecomputedCrossEncoder(index, model_pair, query_length=32, anchor=False)(pairs)
    assert_same_scores(precomputed, full_scores(model_pair, pairs), atol=1e-4)


def test_float16_states_stay_close(last_layer, corpus, pairs, tmp_path):
    index = DocStateIndex(tmp_path / "index")
    with pytest.warns(UserWarning, match="truncated"):
        index.build(corpus, last_layer, doc_length=96, verbose=False)  # float16 by default
    assert index.meta["dtype"] == "float16"
    precomputed = PrecomputedCrossEncoder(index, last_layer, query_length=32, anchor=False)(pairs)
    assert_same_scores(precomputed, full_scores(last_layer, pairs), atol=5e-3)


def test_a_pruned_feed_forward_block_shares_the_index(index, pairs):
    model, tokenizer = confined(1)
    model.prune_feed_forward(2, torch.arange(0, 1536, 3))
    assert model.config.feed_forward_sizes == [1536, 1536, 512]
    precomputed = PrecomputedCrossEncoder(index, (model, tokenizer), query_length=32, anchor=False)(pairs)
    assert_same_scores(precomputed, full_scores((model, tokenizer), pairs), atol=1e-4)


def test_int8_keeps_the_ranking_close(index, last_layer, pairs):
    exact = PrecomputedCrossEncoder(index, last_layer, query_length=32, anchor=False)(pairs)
    quantised = PrecomputedCrossEncoder(index, last_layer, query_length=32, anchor=False, precision="int8")(pairs)
    merged = exact.merge(quantised, on=["qid", "docno"])
    assert np.corrcoef(merged["score_x"], merged["score_y"])[0, 1] > 0.98


def test_anchor_mixes_the_first_stage(index, last_layer, pairs):
    alone = PrecomputedCrossEncoder(index, last_layer, query_length=32, anchor=False)(pairs)
    anchored = PrecomputedCrossEncoder(index, last_layer, query_length=32, anchor=Anchor(1, 4))(pairs)
    keys = pairs[["qid", "docno", "score"]].rename(columns={"score": "first_stage"})
    model = keys.merge(alone[["qid", "docno", "score"]], on=["qid", "docno"])["score"].to_numpy()
    expected = Anchor(1, 4).combine(keys["qid"].to_numpy(), keys["first_stage"].to_numpy(), model)
    got = keys.merge(anchored[["qid", "docno", "score"]], on=["qid", "docno"])["score"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_output_contract(index, last_layer, pairs):
    reranker = PrecomputedCrossEncoder(index, last_layer, anchor=False)
    frame = pairs.assign(extra=range(len(pairs)))
    out = reranker(frame)
    assert out["score"].dtype == np.float32
    assert (out.sort_index()["extra"].to_numpy() == frame["extra"].to_numpy()).all()
    assert set(frame.columns) <= set(out.columns)
    assert_fresh_ranks(out)
    assert reranker.last_stats.pairs == len(pairs)
    without_text = reranker(pairs.drop(columns=["text"]))  # no text needed
    assert_same_scores(out, without_text, atol=0)


def test_empty_frame(index, last_layer):
    out = PrecomputedCrossEncoder(index, last_layer)(pd.DataFrame(columns=["qid", "query", "docno"]))
    assert len(out) == 0 and {"score", "rank"} <= set(out.columns)


def test_bad_frames(index, last_layer, pairs):
    reranker = PrecomputedCrossEncoder(index, last_layer, anchor=False)
    with pytest.raises(KeyError, match="docno"):
        reranker(pairs.drop(columns=["docno"]))
    with pytest.raises(TypeError, match="'qid' must hold str"):
        reranker(pairs.head(2).assign(qid=[1, 2]))
    with pytest.raises(ValueError, match="empty 'query'"):
        reranker(pairs.head(2).assign(query=" "))
    with pytest.raises(TypeError, match="DataFrame"):
        reranker({"qid": ["1"], "query": ["a"], "docno": ["d"]})
    with pytest.raises(KeyError, match="no `score`"):  # an anchored reranker needs the first stage's score
        PrecomputedCrossEncoder(index, last_layer, anchor=True)(pairs.drop(columns=["score"]))


def test_missing_docnos_are_named(index, last_layer, pairs):
    frame = pairs.head(3).assign(docno=["MED-714", "not-indexed", "also-not"])
    frame["text"] = frame["text"].iloc[0]
    with pytest.raises(KeyError, match=r"2 of 3 candidates are not in .*not-indexed"):
        PrecomputedCrossEncoder(index, last_layer, anchor=False)(frame)


def test_a_changed_corpus_is_an_error(index, last_layer, pairs):
    changed = pairs.head(4).copy()
    changed.loc[changed.index[2], "text"] = changed["text"].iloc[2] + " revised"
    with pytest.raises(ValueError, match="corpus changed"):
        PrecomputedCrossEncoder(index, last_layer, anchor=False)(changed)
    scored = PrecomputedCrossEncoder(index, last_layer, anchor=False, check_text=False)(changed)
    assert np.isfinite(scored["score"]).all()


def test_an_index_of_another_model_is_an_error(index, pairs):
    model, tokenizer = confined(1)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.bias.add_(0.01)
    with pytest.raises(ValueError, match="another model"):
        PrecomputedCrossEncoder(index, (model, tokenizer), anchor=False)(pairs)


def test_a_model_reading_below_the_split_is_an_error(index, pairs):
    with pytest.raises(ValueError, match="reads the query from layer 1"):
        PrecomputedCrossEncoder(index, confined(2), anchor=False)(pairs)


def test_a_symmetric_model_with_open_query_gates_is_refused(corpus, tmp_path):
    model, tokenizer = gated_from_bi_encoder(num_layers=2, query_gates=True)
    with torch.no_grad():
        model.query_gates.fill_(0.5)
    with pytest.raises(ValueError, match="symmetric"):
        DocStateIndex(tmp_path / "index").build(corpus[:2], (model, tokenizer), verbose=False)


def test_bad_corpora(last_layer, corpus, tmp_path):
    path = tmp_path / "index"
    with pytest.raises(ValueError, match="duplicate docno"):
        DocStateIndex(path).build(corpus[:3] + corpus[:1], last_layer, verbose=False)
    with pytest.raises(ValueError, match="empty"):
        DocStateIndex(path).build([], last_layer, verbose=False)
    with pytest.raises(ValueError, match="no str 'text'"):
        DocStateIndex(path).build([{"docno": "a", "text": None}], last_layer, verbose=False)
    with pytest.raises(ValueError, match="dtype"):
        DocStateIndex(path).build(corpus[:2], last_layer, dtype="int4", verbose=False)
    assert not path.exists() and list(tmp_path.iterdir()) == []  # nothing half-written is left


def test_rebuilding_needs_overwrite(index, last_layer, corpus):
    with pytest.raises(FileExistsError, match="overwrite"):
        DocStateIndex(index.path).build(corpus[:2], last_layer, verbose=False)


def test_incomplete_or_absent_index(tmp_path, last_layer):
    with pytest.raises(FileNotFoundError, match="build one first"):
        PrecomputedCrossEncoder(tmp_path / "absent", last_layer)
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "pt_meta.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="not a complete DocStateIndex"):
        PrecomputedCrossEncoder(tmp_path / "partial", last_layer)


def test_an_index_built_in_memory_needs_its_model(index):
    with pytest.raises(ValueError, match="pass it as `model`"):
        PrecomputedCrossEncoder(index)


def test_pickles_by_path(index, last_layer, pairs, tmp_path):
    copy = pickle.loads(pickle.dumps(index))
    assert copy == index and len(pickle.dumps(index)) < 2000
    model, tokenizer = last_layer
    from pyterrier_shallow.gated import save_delta

    folder = save_delta(model, tokenizer, tmp_path / "model")
    reranker = PrecomputedCrossEncoder(index, folder, query_length=32, anchor=False)
    restored = pickle.loads(pickle.dumps(reranker))
    assert restored._loaded is None
    assert_same_scores(restored(pairs), full_scores(last_layer, pairs), atol=2e-3)  # the folder holds fp16 weights


def test_inspect_rebuilds_the_reranker(index, last_layer):
    reranker = PrecomputedCrossEncoder(index, last_layer, anchor=False, batch_tokens=512)
    rebuilt = pt.inspect.transformer_apply_attributes(reranker)
    assert rebuilt.index == index and rebuilt.batch_tokens == 512 and rebuilt.anchor is False


def test_small_token_batches_give_the_same_scores(index, last_layer, pairs):
    whole = PrecomputedCrossEncoder(index, last_layer, anchor=False)(pairs)
    pieces = PrecomputedCrossEncoder(index, last_layer, anchor=False, batch_tokens=50)(pairs)
    assert_same_scores(whole, pieces, atol=1e-5)


class TestPrecomputedCrossEncoderContract(pt.testing.TransformerTestCase):
    folder = None

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.folder, ignore_errors=True)

    @staticmethod
    def get_transformer():
        folder = TestPrecomputedCrossEncoderContract.folder = Path(tempfile.mkdtemp(prefix="states-contract-"))
        model_pair = confined(1)
        docs = [{"docno": "d1", "text": "vitamin d and bone health"}, {"docno": "d2", "text": "statins"}]
        index = DocStateIndex(folder / "index").build(docs, model_pair, verbose=False)
        return PrecomputedCrossEncoder(index, model_pair, anchor=False)


def test_index_for_model_keeps_one_index_per_fingerprint_and_length(corpus, tmp_path):
    from pyterrier_shallow.precomputed.index import index_for_model

    with pytest.warns(UserWarning, match="truncated"):
        full = index_for_model(None, tmp_path, lambda: corpus[:4])  # the shipped precomputed model
        short = index_for_model(None, tmp_path, lambda: corpus[:4], doc_length=32)
    assert full.path != short.path and short.meta["doc_length"] == 32 and full.meta["doc_length"] == 128
    assert index_for_model(None, tmp_path, lambda: pytest.fail("an index that exists is not rebuilt")) == full


def test_queries_encoded_a_block_at_a_time_give_the_same_scores(index, last_layer, pairs, monkeypatch):
    from pyterrier_shallow.precomputed import reranker as module

    whole = PrecomputedCrossEncoder(index, last_layer, anchor=False)(pairs.sample(frac=1, random_state=1))
    monkeypatch.setattr(module, "QUERIES_AT_ONCE", 2)
    blocks = PrecomputedCrossEncoder(index, last_layer, anchor=False)(pairs.sample(frac=1, random_state=2))
    assert_same_scores(whole, blocks, atol=1e-5)


@pytest.mark.parametrize("query_tokens", [1, 5, 21, 22, 40])
def test_reading_the_query_by_projected_values_equals_attention_then_projection(last_layer, query_tokens):
    from pyterrier_shallow.precomputed._split import read_query
    from pyterrier_shallow.sparse._backbone import merge_heads

    model, _ = last_layer
    layer = model.bert.encoder.layer[2]
    heads, head_dim = model.config.num_attention_heads, model.config.hidden_size // model.config.num_attention_heads
    generator = torch.Generator().manual_seed(query_tokens)
    doc_queries, residual = (torch.randn(50, heads * head_dim, generator=generator) for _ in range(2))
    keys, values = (torch.randn(heads, query_tokens, head_dim, generator=generator) for _ in range(2))
    gate = torch.rand(heads, generator=generator)
    split = doc_queries.view(1, 50, heads, head_dim).transpose(1, 2)
    reading = torch.nn.functional.scaled_dot_product_attention(split, keys[None], values[None])
    expected = layer.attention.output(merge_heads(reading * gate[None, :, None, None])[0], residual)
    with torch.inference_mode():
        found = read_query(layer, doc_queries, keys, values, gate, residual)
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=0)


def test_a_long_query_scores_as_the_full_model(index, last_layer, pairs):
    long = pairs.assign(query=pairs["query"] + " and what the evidence says about diet, cancer risk, statins, "
                        "cholesterol, vitamin D, breast milk, fish oil and heart disease in older adults today")
    reranker = CrossEncoder(last_layer, anchor=False, query_length=64, doc_length=96, warn_truncation=False)
    precomputed = PrecomputedCrossEncoder(index, last_layer, query_length=64, anchor=False)(long)
    assert_same_scores(precomputed, reranker(long), atol=1e-4)
