import json
import pickle
import shutil
import warnings

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from _ranking import assert_fresh_ranks

import pyterrier_shallow.dense as dense
from pyterrier_shallow._hf import minilm_path


@pytest.fixture(scope="module")
def model():
    return dense.BiEncoder(warn_truncation=False, batch_size=16)


@pytest.fixture(scope="module")
def nfcorpus(shared_data):
    """16 real NFCorpus test documents (some past 256 tokens) and 8 real queries."""
    with open(shared_data / "nfcorpus" / "test.docs", encoding="utf-8") as handle:
        docs = [line.rstrip("\n").split("\t", 1) for line, _ in zip(handle, range(16))]
    with open(shared_data / "nfcorpus" / "queries.beir-test.tsv", encoding="utf-8") as handle:
        queries = [line.rstrip("\n").split("\t", 1) for line, _ in zip(handle, range(8))]
    return pd.DataFrame(docs, columns=["docno", "text"]), pd.DataFrame(queries, columns=["qid", "query"])


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device="cpu")


@pytest.fixture(scope="module")
def results(nfcorpus):
    docs, queries = nfcorpus
    frame = queries.head(3).merge(docs.head(6), how="cross")
    return frame.assign(extra=range(len(frame)))


def _cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_vectors_match_sentence_transformers(model, reference, nfcorpus):
    docs, queries = nfcorpus
    ours_docs = model.encode_docs(docs["text"].tolist())
    assert model.last_stats.truncated > 0  # the parity holds on truncated documents too
    ours_queries = model.encode_queries(queries["query"].tolist())
    for ours, texts in ((ours_docs, docs["text"]), (ours_queries, queries["query"])):
        expected = reference.encode(texts.tolist(), batch_size=8)
        assert ours.dtype == np.float32 and ours.shape == expected.shape == (len(texts), 384)
        np.testing.assert_allclose(_cosine(ours, expected), 1.0, atol=1e-5)
        np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_reads_the_checkpoint_layout(model):
    assert (model.pooling, model.normalize, model.dimension) == ("mean", True, 384)
    model.model  # noqa: B018 - loads it
    assert (model.query_length, model.doc_length) == (256, 256)  # sentence_bert_config.json max_seq_length


def test_batching_does_not_change_vectors(model, nfcorpus):
    texts = nfcorpus[0]["text"].tolist()[:8]
    tiny = dense.BiEncoder(batch_size=1, warn_truncation=False)
    budget = dense.BiEncoder(batch_size=64, token_budget=600, warn_truncation=False)
    expected = model.encode_docs(texts)
    np.testing.assert_allclose(tiny.encode_docs(texts[::-1])[::-1], expected, atol=1e-5)
    np.testing.assert_allclose(budget.encode_docs(texts), expected, atol=1e-5)
    assert budget.last_stats.batches > len(texts) * 256 // 600 // 2


def test_sentence_transformers_6_layout_and_prompts(reference, nfcorpus, tmp_path):
    reference.save(str(tmp_path / "st6"))
    config_path = tmp_path / "st6" / "config_sentence_transformers.json"
    config = json.loads(config_path.read_text())
    config["prompts"] = {"query": "query: ", "document": "passage: "}
    config_path.write_text(json.dumps(config))
    assert "max_seq_length" not in json.loads((tmp_path / "st6" / "sentence_bert_config.json").read_text())

    from sentence_transformers import SentenceTransformer

    prompted = SentenceTransformer(str(tmp_path / "st6"), device="cpu")
    ours = dense.BiEncoder(tmp_path / "st6", warn_truncation=False)
    docs, queries = nfcorpus
    np.testing.assert_allclose(
        ours.encode_queries(queries["query"].tolist()), prompted.encode_query(queries["query"].tolist()), atol=1e-5
    )
    np.testing.assert_allclose(
        ours.encode_docs(docs["text"].tolist()[:6]), prompted.encode_document(docs["text"].tolist()[:6]), atol=1e-5
    )
    assert ours.doc_length == 256  # from tokenizer_config.json model_max_length


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_plain_hugging_face_checkpoint(nfcorpus, tmp_path, pooling):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(minilm_path()).save_pretrained(tmp_path / "plain")
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path / "plain")
    ours = dense.BiEncoder(tmp_path / "plain", pooling=pooling, max_length=128, warn_truncation=False)
    assert not ours.layout.sentence_transformers and not ours.normalize
    transformer = SentenceTransformer(str(minilm_path()), device="cpu")[0]
    expected_model = SentenceTransformer(modules=[transformer, Pooling(384, pooling_mode=pooling)], device="cpu")
    expected_model.max_seq_length = 128
    texts = nfcorpus[0]["text"].tolist()[:6]
    np.testing.assert_allclose(ours.encode_docs(texts), expected_model.encode(texts), atol=2e-5)


def test_plain_checkpoint_defaults_to_mean_pooling(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(minilm_path()).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path)
    assert dense.BiEncoder(tmp_path).pooling == "mean"


def test_unsupported_module_is_named(tmp_path):
    shutil.copytree(minilm_path(), tmp_path / "m")
    modules = json.loads((tmp_path / "m" / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "m" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="Dense"):
        dense.BiEncoder(tmp_path / "m")


def test_unknown_pooling_and_bad_lengths():
    with pytest.raises(ValueError, match="unknown pooling"):
        dense.BiEncoder(pooling="median")
    with pytest.raises(ValueError, match="query_length"):
        dense.BiEncoder(query_length=1)
    with pytest.raises(ValueError, match="position embeddings"):
        dense.BiEncoder(doc_length=4096).encode_docs(["x"])


def test_unknown_model_source_explains_itself(tmp_path):
    with pytest.raises(OSError, match="hub"):
        dense.BiEncoder(str(tmp_path / "no-such-model")).encode_queries(["x"])


def test_long_query_is_truncated_and_reported(nfcorpus):
    text = nfcorpus[0]["text"].iloc[0]
    short = dense.BiEncoder(query_length=16)
    with pytest.warns(UserWarning, match="truncated 1 of 1 queries to query_length=16"):
        short.encode_queries([text])
    assert short.last_stats.tokens == 16


def test_dimension_without_loading_weights():
    fresh = dense.BiEncoder()
    assert fresh.dimension == 384
    assert fresh._model is None


def test_query_encoder_frame(model, nfcorpus):
    queries = nfcorpus[1]
    frame = pd.concat([queries, queries.head(2)], ignore_index=True).assign(extra=1)
    out = model.query_encoder()(frame)
    assert list(out.columns) == [*frame.columns, "query_vec"]
    assert model.last_stats.texts == len(queries)  # repeated queries are encoded once
    assert all(v.dtype == np.float32 and v.shape == (384,) for v in out["query_vec"])
    np.testing.assert_array_equal(out["query_vec"].iloc[-1], out["query_vec"].iloc[1])
    np.testing.assert_allclose(np.stack(out["query_vec"][: len(queries)]), model.encode_queries(queries["query"]))


def test_doc_encoder_frame(model, nfcorpus):
    docs = nfcorpus[0].head(5).assign(extra="x")
    out = model.doc_encoder()(docs)
    assert list(out.columns) == [*docs.columns, "doc_vec"]
    np.testing.assert_allclose(np.stack(out["doc_vec"]), model.encode_docs(docs["text"].tolist()), atol=1e-6)


def test_text_scorer_matches_cosine(model, reference, results):
    out = model.text_scorer()(results)
    assert out["score"].dtype == np.float32
    expected = _cosine(reference.encode(results["query"].tolist()), reference.encode(results["text"].tolist()))
    np.testing.assert_allclose(out["score"].to_numpy(), expected, atol=1e-5)
    assert (out["extra"].to_numpy() == results["extra"].to_numpy()).all()
    assert_fresh_ranks(out)


def test_text_scorer_uses_vectors_already_there(model, results):
    with_vectors = model.doc_encoder()(model.query_encoder()(results))
    expected = model.text_scorer()(results)["score"].to_numpy()
    np.testing.assert_allclose(model.text_scorer()(with_vectors)["score"].to_numpy(), expected, atol=1e-6)
    no_text = with_vectors.drop(columns=["text", "query"])
    np.testing.assert_allclose(model.text_scorer()(no_text)["score"].to_numpy(), expected, atol=1e-6)


def test_empty_frames(model):
    queries = model.query_encoder()(pd.DataFrame(columns=["qid", "query"]))
    assert len(queries) == 0 and "query_vec" in queries.columns
    docs = model.doc_encoder()(pd.DataFrame(columns=["docno", "text"]))
    assert len(docs) == 0 and "doc_vec" in docs.columns
    scored = model.text_scorer()(pd.DataFrame(columns=["qid", "query", "docno", "text"]))
    assert len(scored) == 0 and {"score", "rank"} <= set(scored.columns)
    assert model.encode_docs([]).shape == (0, 384)


@pytest.mark.parametrize(
    ("transformer", "columns", "match"),
    [
        ("query_encoder", ["qid", "text"], "query"),
        ("doc_encoder", ["docno", "query"], "text"),
        ("text_scorer", ["qid", "docno", "query"], "TextLoader"),
        ("text_scorer", ["qid", "docno", "text"], "query_vec"),
    ],
)
def test_missing_columns_are_named(model, transformer, columns, match):
    frame = pd.DataFrame([["1", "x", "y"][: len(columns)]], columns=columns)
    with pytest.raises(KeyError, match=match):
        getattr(model, transformer)()(frame)


def test_bad_values(model, results):
    with pytest.raises(ValueError, match="empty 'query'"):
        model.query_encoder()(pd.DataFrame({"qid": ["1"], "query": ["   "]}))
    with pytest.raises(ValueError, match="missing or non-string 'text'"):
        model.doc_encoder()(pd.DataFrame({"docno": ["1", "2"], "text": ["fine", None]}))
    with pytest.raises(TypeError, match="'qid' must hold str"):
        model.text_scorer()(results.head(2).assign(qid=[1, 2]))
    with pytest.raises(ValueError, match="not 1-dimensional numpy vectors"):
        model.text_scorer()(results.head(2).assign(query_vec=[None, None]))
    assert np.isfinite(model.text_scorer()(results.head(2).assign(text=["", "x"]))["score"]).all()


def test_every_transformer_pickles_small_and_reloads(model, results):
    model.model  # noqa: B018 - loaded before pickling
    for factory in ("query_encoder", "doc_encoder", "text_scorer"):
        transformer = getattr(model, factory)()
        before = transformer(results)
        payload = pickle.dumps(transformer)
        assert len(payload) < 100_000, factory  # the weights stay behind
        clone = pickle.loads(payload)
        assert clone.bi_encoder._model is None
        after = clone(results)
        column = {"query_encoder": "query_vec", "doc_encoder": "doc_vec", "text_scorer": "score"}[factory]
        np.testing.assert_allclose(np.stack(after[column]), np.stack(before[column]), atol=1e-6)


def test_verbose_progress_bar(nfcorpus, capsys):
    dense.BiEncoder(verbose=True).query_encoder()(nfcorpus[1].head(2))
    assert "Encoding queries" in capsys.readouterr().err


def test_composes_with_rank_cutoff(model, results):
    out = (model.text_scorer() % 2)(results)
    assert out.groupby("qid").size().max() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(model.text_scorer() % 2, pt.Transformer)


class TestQueryEncoderContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        return dense.BiEncoder().query_encoder()


class TestDocEncoderContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        return dense.BiEncoder().doc_encoder()


class TestTextScorerContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        return dense.BiEncoder().text_scorer()


def test_weights_loaded_while_encoding_can_still_be_trained():
    encoder = dense.BiEncoder(warn_truncation=False, query_length=16)
    encoder.encode_queries(["loaded here, inside torch.inference_mode"])
    hidden, mask = encoder.token_states(["a query to train on"], "query")
    encoder.pooled(hidden, mask).sum().backward()
    assert encoder.model.encoder.layer[0].attention.self.query.weight.grad is not None
