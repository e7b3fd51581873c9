import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import pyterrier_shallow as pts


@pytest.fixture(scope="module")
def scorer(shallow_checkpoint):
    return pts.CrossEncoder(shallow_checkpoint, max_length=256, batch_size=16, warn_truncation=False)


def _reference_scores(checkpoint, frame, *, max_length=256):
    from sentence_transformers import CrossEncoder as ReferenceCrossEncoder

    reference = ReferenceCrossEncoder(str(checkpoint), max_length=max_length, activation_fn=torch.nn.Identity())
    return reference.predict(list(zip(frame["query"], frame["text"])), batch_size=8)


def test_scores_match_sentence_transformers(shallow_checkpoint, scorer, nfcorpus_pairs):
    ours = scorer(nfcorpus_pairs)
    reference = _reference_scores(shallow_checkpoint, nfcorpus_pairs)
    assert scorer.last_stats.truncated_docs > 0  # the parity holds on truncated documents too
    np.testing.assert_allclose(ours["score"].to_numpy(), reference, atol=1e-4)


def test_two_logit_head_scores_relevant_minus_irrelevant(two_logit_checkpoint, nfcorpus_pairs):
    frame = nfcorpus_pairs.head(12)
    ours = pts.CrossEncoder(two_logit_checkpoint, max_length=256, warn_truncation=False)(frame)
    logits = _reference_scores(two_logit_checkpoint, frame)
    assert logits.shape == (12, 2)
    np.testing.assert_allclose(ours["score"].to_numpy(), logits[:, 1] - logits[:, 0], atol=1e-4)


def test_batching_does_not_change_scores(shallow_checkpoint, scorer, nfcorpus_pairs):
    tiny = pts.CrossEncoder(shallow_checkpoint, max_length=256, batch_size=1, warn_truncation=False)
    shuffled = nfcorpus_pairs.sample(frac=1.0, random_state=3)
    many = scorer(nfcorpus_pairs).set_index(["qid", "docno"])["score"]
    one = tiny(shuffled).set_index(["qid", "docno"])["score"]
    np.testing.assert_allclose(one.loc[many.index].to_numpy(), many.to_numpy(), atol=1e-5)


def test_truncation_is_counted_and_reported(shallow_checkpoint, nfcorpus_pairs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(shallow_checkpoint)
    lengths = [
        len(tokenizer(q, t, truncation=False, padding=False)["input_ids"])
        for q, t in zip(nfcorpus_pairs["query"], nfcorpus_pairs["text"])
    ]
    expected = sum(length > 128 for length in lengths)
    assert expected > 0
    scorer = pts.CrossEncoder(shallow_checkpoint, max_length=128)
    with pytest.warns(UserWarning, match=f"truncated {expected} of {len(nfcorpus_pairs)} documents"):
        scorer(nfcorpus_pairs)
    assert scorer.last_stats.truncated_docs == expected
    assert scorer.last_stats.tokens == sum(min(length, 128) for length in lengths)
    # reported once per reranker: a query-by-query loop does not warn at every query, the totals keep counting
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _, query in nfcorpus_pairs.groupby("qid"):
            scorer(query)
    assert scorer.truncation_totals.truncated_docs == 2 * expected
    assert scorer.truncation_totals.pairs == 2 * len(nfcorpus_pairs)


def test_long_query_is_cut_to_query_length_and_counted(shallow_checkpoint, nfcorpus_pairs):
    frame = nfcorpus_pairs.head(3).assign(query=" ".join(["cholesterol statin"] * 40))
    scorer = pts.CrossEncoder(shallow_checkpoint, query_length=16, max_length=64, warn_truncation=False)
    scorer(frame)
    assert scorer.last_stats.truncated_queries == 3
    assert scorer.last_stats.tokens == 3 * 64


def test_preloaded_model_and_tokenizer(shallow_checkpoint, scorer, nfcorpus_pairs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    loaded = (
        AutoModelForSequenceClassification.from_pretrained(shallow_checkpoint),
        AutoTokenizer.from_pretrained(shallow_checkpoint),
    )
    frame = nfcorpus_pairs.head(5)
    ours = pts.CrossEncoder(loaded, max_length=256, warn_truncation=False)(frame)
    np.testing.assert_allclose(ours["score"].to_numpy(), scorer(frame)["score"].to_numpy(), atol=1e-6)


def test_unknown_model_source_explains_itself(tmp_path):
    scorer = pts.CrossEncoder(str(tmp_path / "no-such-model"))
    frame = pd.DataFrame([["1", "q", "d1", "t"]], columns=["qid", "query", "docno", "text"])
    with pytest.raises(OSError, match="hub"):
        scorer(frame)


def test_max_length_beyond_the_model_is_rejected(shallow_checkpoint, nfcorpus_pairs):
    with pytest.raises(ValueError, match="position embeddings"):
        pts.CrossEncoder(shallow_checkpoint, max_length=4096)(nfcorpus_pairs.head(1))


def test_lengths_default_to_those_of_training(shallow_checkpoint, tmp_path, nfcorpus_pairs):
    import json
    import shutil

    trained = tmp_path / "trained"
    shutil.copytree(shallow_checkpoint, trained)
    (trained / "training_card.json").write_text(json.dumps({"config": {"query_length": 16, "doc_length": 40}}))
    scorer = pts.CrossEncoder(trained, warn_truncation=False)
    scorer(nfcorpus_pairs.head(4))
    assert (scorer.query_length, scorer.doc_length) == (16, 40)
    assert scorer.last_stats.tokens <= 4 * (16 + 40 + 3)
    assert pts.CrossEncoder(trained, doc_length=100).doc_length == 100


def test_int8_precision_quantises_and_stays_close_to_float32(shallow_checkpoint, scorer, nfcorpus_pairs):
    from pyterrier_shallow._quantize import quantized_linear_count

    int8 = pts.CrossEncoder(shallow_checkpoint, max_length=256, precision="int8", warn_truncation=False)
    ours = int8(nfcorpus_pairs)["score"].to_numpy()
    assert quantized_linear_count(int8.network) > 0
    reference = scorer(nfcorpus_pairs)["score"].to_numpy()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=0.02)


def test_unknown_precision_is_rejected(shallow_checkpoint):
    with pytest.raises(ValueError, match="precision"):
        pts.CrossEncoder(shallow_checkpoint, precision="fp8")


def test_pair_lengths_are_those_scored(scorer, nfcorpus_pairs):
    lengths = scorer.pair_lengths(nfcorpus_pairs["query"].tolist(), nfcorpus_pairs["text"].tolist())
    scorer(nfcorpus_pairs)
    assert int(lengths.sum()) == scorer.last_stats.tokens
