import numpy as np
import pytest
import torch

import pyterrier_shallow as pts
from pyterrier_shallow.sparse import AttentionPattern, SparseCrossEncoder
from pyterrier_shallow.sparse.pattern import CLS, DOC, PAD, QUERY


@pytest.fixture(scope="module")
def checkpoint(shallow_checkpoint, tmp_path_factory):
    """The 2-layer checkpoint with its seeded head redrawn at unit scale, so that logits (and errors) are O(1)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(shallow_checkpoint)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(7))
    directory = tmp_path_factory.mktemp("ce-unit-head")
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(shallow_checkpoint).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def dense(checkpoint):
    return pts.CrossEncoder(checkpoint, max_length=192, batch_size=16, warn_truncation=False)


@pytest.fixture(scope="module")
def sparse(dense):
    return SparseCrossEncoder.from_cross_encoder(dense, window=4)


def reference_scores(cross_encoder, frame, pattern):
    """The dense model with the pattern's full token-to-token mask, on the pairs the cross-encoder would build."""
    pairs, model = cross_encoder._pairs, cross_encoder.network
    encoded = pairs.encode(frame["query"].tolist(), frame["text"].tolist())
    inputs = pairs.collate(encoded, np.arange(len(frame)))
    groups = torch.where(inputs["token_type_ids"] == 1, DOC, QUERY)
    groups[:, 0] = CLS
    groups = groups.masked_fill(inputs["attention_mask"] == 0, PAD)
    mask = pattern.token_mask(groups)[:, None]
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"], attention_mask=mask)
    return logits.logits[:, 0].numpy()


@pytest.mark.parametrize(
    "pattern", [AttentionPattern.dense(), AttentionPattern(window=5000, query_to_cls=True, query_to_doc=True)]
)
def test_dense_pattern_scores_equal_the_cross_encoder(dense, nfcorpus_pairs, pattern):
    sparse = SparseCrossEncoder.from_cross_encoder(dense, pattern=pattern)
    frame = nfcorpus_pairs.iloc[::3]
    ours = sparse(frame)["score"].to_numpy()
    assert sparse.last_stats.truncated_docs > 0  # parity holds on truncated documents too
    np.testing.assert_allclose(ours, dense(frame)["score"].to_numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "pattern",
    [AttentionPattern(window=4), AttentionPattern(window=1, query_to_doc=True)],
    ids=["paper", "query-sees-doc"],
)
def test_sparse_scores_equal_the_dense_mask_reference(dense, nfcorpus_pairs, monkeypatch, pattern):
    """Across several batches and several chunks of shared query states."""
    monkeypatch.setattr("pyterrier_shallow.sparse.cross_encoder._QUERY_CHUNK", 2)
    frame = nfcorpus_pairs.iloc[::2]
    sparse = SparseCrossEncoder.from_cross_encoder(dense, pattern=pattern, batch_size=4)
    out = sparse(frame)
    assert sparse.last_stats.batches >= 8
    expected = reference_scores(sparse, frame, pattern)
    np.testing.assert_allclose(out["score"].to_numpy(), expected, atol=1e-4)
    assert np.abs(out["score"].to_numpy() - dense(frame)["score"].to_numpy()).max() > 5e-3


def test_batching_and_order_do_not_change_scores(sparse, dense, nfcorpus_pairs):
    single = SparseCrossEncoder.from_cross_encoder(dense, window=4, batch_size=1)
    frame = nfcorpus_pairs.iloc[::6]
    shuffled = frame.sample(frac=1.0, random_state=3)
    many = sparse(frame).set_index(["qid", "docno"])["score"]
    one = single(shuffled).set_index(["qid", "docno"])["score"]
    np.testing.assert_allclose(one.loc[many.index].to_numpy(), many.to_numpy(), atol=1e-5)


def test_from_cross_encoder_shares_the_loaded_model_and_settings(dense):
    loaded = dense.network  # loads it, whichever test of this module ran before
    sparse = SparseCrossEncoder.from_cross_encoder(dense, window=2, batch_size=5)
    assert sparse.network is loaded
    assert sparse.pattern == AttentionPattern(window=2)
    assert (sparse.batch_size, sparse.max_length, sparse.query_length) == (5, dense.max_length, dense.query_length)
    assert "window=2" in repr(sparse)


def test_from_an_unloaded_cross_encoder_loads_lazily(checkpoint, nfcorpus_pairs):
    dense = pts.CrossEncoder(checkpoint, max_length=192, warn_truncation=False)
    lazy = SparseCrossEncoder.from_cross_encoder(dense, window=4)
    assert lazy._network is None
    assert len(lazy(nfcorpus_pairs.head(3))) == 3


def test_truncation_is_counted_and_reported(dense, nfcorpus_pairs):
    sparse = SparseCrossEncoder.from_cross_encoder(dense, window=4, warn_truncation=True, max_length=128)
    lengths = dense._pairs.encode(nfcorpus_pairs["query"].tolist(), nfcorpus_pairs["text"].tolist()).lengths
    with pytest.warns(UserWarning, match="truncated"):
        sparse(nfcorpus_pairs)
    assert sparse.last_stats.truncated_docs > 0
    assert sparse.last_stats.tokens == int(np.minimum(lengths, 128).sum())


def test_long_query_is_cut_and_counted(sparse, nfcorpus_pairs):
    frame = nfcorpus_pairs.head(3).assign(query=" ".join(["cholesterol statin"] * 40))
    short = SparseCrossEncoder.from_cross_encoder(sparse, query_length=16, max_length=64)
    short(frame)
    assert short.last_stats.truncated_queries == 3
    assert short.last_stats.tokens == 3 * 64


def test_bad_options_are_rejected(checkpoint, nfcorpus_pairs):
    with pytest.raises(ValueError, match="kernel"):
        SparseCrossEncoder(checkpoint, kernel="dense")
    with pytest.raises(ValueError, match="window"):
        SparseCrossEncoder(checkpoint, window=-2)
    with pytest.raises(ValueError, match="extend_positions=True"):
        SparseCrossEncoder(checkpoint, max_length=1024)(nfcorpus_pairs.head(1))


def test_extended_positions_score_long_documents_without_touching_the_dense_model(dense, nfcorpus_pairs):
    long_text = " ".join(nfcorpus_pairs["text"].unique())
    frame = nfcorpus_pairs.head(4).assign(text=[long_text, long_text[:3000], long_text, "short"])
    before = dense(frame)["score"].to_numpy()
    sparse = SparseCrossEncoder.from_cross_encoder(dense, window=4, max_length=1536, extend_positions=True)
    out = sparse(frame)
    assert sparse.network is not dense.network
    assert sparse.network.config.max_position_embeddings == 1536
    assert dense.network.config.max_position_embeddings == 512
    assert sparse.last_stats.tokens > 2 * 1500
    np.testing.assert_allclose(dense(frame)["score"].to_numpy(), before, atol=1e-6)
    np.testing.assert_allclose(out["score"].to_numpy(), reference_scores(sparse, frame, sparse.pattern), atol=1e-4)


def test_two_logit_head_scores_relevant_minus_irrelevant(two_logit_checkpoint, nfcorpus_pairs):
    frame = nfcorpus_pairs.head(12)
    dense = pts.CrossEncoder(two_logit_checkpoint, max_length=192, warn_truncation=False)
    sparse = SparseCrossEncoder.from_cross_encoder(dense, pattern=AttentionPattern.dense())
    np.testing.assert_allclose(sparse(frame)["score"].to_numpy(), dense(frame)["score"].to_numpy(), atol=1e-5)


def test_sparse_model_is_a_trainable_module(sparse, nfcorpus_pairs):
    module = sparse.sparse_model
    assert isinstance(module, torch.nn.Module)
    expected = {f"model.{name}" for name, _ in sparse.network.named_parameters()}
    assert {name for name, _ in module.named_parameters()} == expected


def test_the_shared_settings_are_every_common_argument_but_the_model():
    import inspect

    from pyterrier_shallow.cross_encoder import SCORING_SETTINGS

    dense = set(inspect.signature(pts.CrossEncoder.__init__).parameters) - {"self", "model"}
    sparse = set(inspect.signature(SparseCrossEncoder.__init__).parameters) - {"self", "model"}
    assert set(SCORING_SETTINGS) == dense & sparse
    assert dense - sparse == {"precision"}  # int8 is for the dense reranker only


def test_an_int8_cross_encoder_is_refused_by_name(checkpoint):
    with pytest.raises(ValueError, match="int8"):
        SparseCrossEncoder.from_cross_encoder(pts.CrossEncoder(checkpoint, precision="int8"), window=2)
