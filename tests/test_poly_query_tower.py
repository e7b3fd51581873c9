"""A poly-encoder with a query tower of its own: training it from a teacher, saving it as a delta, loading it back."""

import itertools
import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

import pyterrier_shallow as pts
from pyterrier_shallow.datasets import vaswani
from pyterrier_shallow.poly import PolyEncoder, PolyTrainConfig, train_codes
from pyterrier_shallow.train.distillation import DistillationSource

NUM_DOCS = 60


@pytest.fixture(scope="module")
def bi_encoder():
    return pts.BiEncoder(warn_truncation=False, query_length=32, doc_length=64)


@pytest.fixture(scope="module")
def candidates():
    """Four real Vaswani queries, each against 15 real abstracts."""
    corpus = list(itertools.islice(vaswani().get_corpus_iter(), NUM_DOCS))
    topics = vaswani().get_topics().head(4)
    rows = [(qid, query, doc["docno"], doc["text"])
            for (qid, query), start in zip(topics[["qid", "query"]].values, range(0, NUM_DOCS, 15), strict=True)
            for doc in corpus[start : start + 15]]
    return pd.DataFrame(rows, columns=["qid", "query", "docno", "text"])


@pytest.fixture(scope="module")
def tuned(bi_encoder, candidates):
    """A poly-encoder whose top query layer and codes were distilled for a few steps from a real teacher."""
    teacher = pts.BiEncoder(warn_truncation=False, query_length=32, doc_length=64).text_scorer()
    scored = candidates.assign(teacher_score=teacher(candidates)["score"].to_numpy() * 20)
    source = DistillationSource(scored, name="vaswani-slice")
    poly = PolyEncoder.fresh(bi_encoder, num_codes=4, seed=1)
    document_weights = {name: value.clone() for name, value in bi_encoder.model.state_dict().items()}
    config = PolyTrainConfig(steps=3, queries_per_step=2, num_negatives=5, warmup_steps=1, eval_every=3,
                             tune="query", query_layers=1, encoder_lr=1e-3, loss="soft-label")
    card = train_codes(poly, source, config=config, verbose=False)
    return poly, card, document_weights


def test_only_the_query_towers_top_layers_learn(tuned, bi_encoder):
    poly, card, document_weights = tuned
    assert poly.own_query_tower and poly.bi_encoder is bi_encoder
    assert card["tuned"] == "codes and query tower" and card["loss"]["name"] == "soft-label"
    for name, value in bi_encoder.model.state_dict().items():
        assert torch.equal(value, document_weights[name]), f"the documents' encoder changed at {name}"
    query_state = poly.query_encoder.model.state_dict()
    changed = {name for name, value in query_state.items() if not torch.equal(value, document_weights[name])}
    assert changed and all(name.startswith("encoder.layer.5.") for name in changed)


def test_saved_as_a_delta_and_loaded_back(tuned, candidates, tmp_path):
    poly = tuned[0]
    expected = poly.text_scorer()(candidates)["score"].to_numpy()
    untuned = PolyEncoder.fresh(poly.bi_encoder, num_codes=4)
    untuned.codes.load_state_dict(poly.codes.state_dict())
    assert not np.allclose(untuned.text_scorer()(candidates)["score"], expected, atol=1e-3)
    with pytest.raises(pickle.PicklingError, match="save it"):  # its weights live only in memory
        pickle.dumps(poly.text_scorer())
    poly.save(tmp_path / "poly", card=tuned[1])
    config = json.loads((tmp_path / "poly" / "poly_config.json").read_text())
    assert config["query_delta"] == "query_delta.safetensors"
    assert not (tmp_path / "poly" / "encoder").exists()
    assert (tmp_path / "poly" / "query_delta.safetensors").stat().st_size < 4_000_000  # one fp16 layer, no more
    loaded = PolyEncoder(tmp_path / "poly")
    assert loaded.own_query_tower and loaded.query_encoder.delta.endswith("query_delta.safetensors")
    assert loaded.bi_encoder.delta is None
    with pytest.warns(UserWarning, match="truncated 9 of 60 documents"):  # as the saved lengths say
        scores = loaded.text_scorer()(candidates)["score"].to_numpy()
    np.testing.assert_allclose(scores, expected, atol=2e-2)  # the delta is stored in fp16
    loaded.bi_encoder.warn_truncation = False
    clone = pickle.loads(pickle.dumps(loaded.text_scorer()))
    np.testing.assert_allclose(clone(candidates)["score"], scores, atol=1e-6)
    with pytest.raises(ValueError, match="one encoder"):
        poly.save(tmp_path / "both", save_encoder=True)


def test_a_tuned_query_tower_still_reads_the_encoders_index(tuned, candidates, tmp_path):
    poly = tuned[0]
    docs = candidates.drop_duplicates("docno")[["docno", "text"]].to_dict("records")
    index = pts.FaissIndex(tmp_path / "index").indexer(poly.bi_encoder, verbose=False).index(docs)
    reranked = poly.reranker(index)(candidates)
    np.testing.assert_allclose(reranked["score"], poly.text_scorer()(candidates)["score"], atol=1e-4)


def test_an_index_of_another_model_is_an_error(tuned, candidates, tmp_path):
    from pyterrier_shallow._hf import minilm_path

    other = pts.BiEncoder(str(minilm_path()), warn_truncation=False, doc_length=64)
    docs = candidates.drop_duplicates("docno")[["docno", "text"]].head(10).to_dict("records")
    index = pts.FaissIndex(tmp_path / "other").indexer(other, verbose=False).index(docs)
    with pytest.raises(ValueError, match="was built with"):
        tuned[0].reranker(index)


def test_query_tower_settings_are_checked():
    with pytest.raises(ValueError, match="tune"):
        PolyTrainConfig(tune="documents")
    with pytest.raises(ValueError, match="query_layers"):
        PolyTrainConfig(query_layers=2)  # only with tune="query"
    with pytest.raises(ValueError, match="loss"):
        PolyTrainConfig(loss="margin")
    with pytest.raises(ValueError, match="two texts"):
        PolyTrainConfig(loss="soft-label", num_negatives=0)


def test_soft_labels_need_a_teacher(bi_encoder, candidates):
    from pyterrier_shallow.train.data import PairsSource

    pairs = candidates.assign(label=(np.arange(len(candidates)) % 15 == 0).astype(int))
    poly = PolyEncoder.fresh(bi_encoder, num_codes=2)
    config = PolyTrainConfig(steps=1, queries_per_step=2, num_negatives=2, warmup_steps=1, loss="soft-label")
    with pytest.raises(ValueError, match="teacher scores"):
        train_codes(poly, PairsSource(pairs), config=config, verbose=False)


def test_bi_encoder_delta_files_are_checked(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError, match="delta"):
        pts.BiEncoder(delta=tmp_path / "absent.safetensors")
    save_file({"no.such.weight": torch.zeros(2)}, str(tmp_path / "bad.safetensors"))
    encoder = pts.BiEncoder(delta=tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="lacks"):
        encoder.encode_queries(["a query"])


def test_train_poly_command_distils_into_a_query_tower(shared_data, tmp_path):
    from pyterrier_shallow.cli import main

    out = tmp_path / "poly"
    argv = ["train-poly", "--out", str(out), "--codes", "4", "--tune", "query", "--query-layers", "1",
            "--distill", "cisi", "--teacher", "hybrid", "--distill-depth", "8", "--validate", "cisi",
            "--val-queries", "4", "--val-depth", "5", "--steps", "2", "--eval-every", "1", "--queries-per-step", "2",
            "--negatives", "3", "--query-length", "16", "--doc-length", "32", "--teacher-doc-length", "32",
            "--data-root", str(shared_data), "--index-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    poly = PolyEncoder(out)
    assert poly.own_query_tower and poly.card["tuned"] == "codes and query tower"
    assert poly.card["loss"]["name"] == "soft-label" and poly.card["data"]["name"] == "distil:cisi"
    assert [point["step"] for point in poly.card["validation"]["curve"]] == [0, 1, 2]
    assert main(["train-poly", "--out", str(out / "x"), "--distill", "cisi", "--device", "cpu"]) == 2  # no teacher
    assert main(["train-poly", "--out", str(out / "x"), "--codes", "4", "16", "--tune", "both", "--data", "cisi",
                 "--device", "cpu"]) == 2  # one encoder fine-tuned at a time


def test_train_poly_over_dense_candidates_takes_pseudo_queries(shared_data, tmp_path):
    """Pseudo-queries are drawn from dense retrieval over their bodies, as topics are from the collection's index."""
    from pyterrier_shallow.cli import main

    out = tmp_path / "poly"
    argv = ["train-poly", "--out", str(out), "--codes", "4", "--candidates", "dense",
            "--distill", "pseudo-title:cisi", "--max-pseudo-queries", "12", "--teacher", "hybrid",
            "--distill-depth", "8", "--validate", "cisi", "--val-queries", "4", "--val-depth", "5", "--steps", "2",
            "--eval-every", "1", "--queries-per-step", "2", "--negatives", "3", "--query-length", "16",
            "--doc-length", "32", "--teacher-doc-length", "32", "--data-root", str(shared_data),
            "--index-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    assert PolyEncoder(out).card["data"]["name"] == "distil-dense:pseudo-title:cisi"
