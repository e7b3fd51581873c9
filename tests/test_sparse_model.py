"""SparseCrossEncoderModel against Hugging Face: dense equality, and a dense-mask reference for every pattern.

The reference runs the unchanged Hugging Face model (SDPA attention) with the full ``(batch, 1, n, n)`` mask of the
pattern, the very matrix the sparse kernels never build.
"""

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pyterrier_shallow._hf import minilm_path
from pyterrier_shallow._pair_tokenizer import PairTokenizer
from pyterrier_shallow.sparse import AttentionPattern, SparseCrossEncoderModel, extend_position_embeddings
from pyterrier_shallow.sparse._segments import PairLayout, doc_tokens, query_tokens
from pyterrier_shallow.sparse.pattern import CLS, DOC, PAD, QUERY


def _load(path, **overrides):
    """The checkpoint with its seeded head redrawn at unit scale, so that logits (and their errors) are O(1)."""
    model = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="sdpa", **overrides)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(7))
    return model.eval()


@pytest.fixture(scope="module")
def shallow(shallow_checkpoint):
    return _load(shallow_checkpoint), AutoTokenizer.from_pretrained(shallow_checkpoint)


def _inputs(tokenizer, frame, max_length=192):
    pairs = PairTokenizer(tokenizer, query_length=32, doc_length=None, max_length=max_length)
    encoded = pairs.encode(frame["query"].tolist(), frame["text"].tolist())
    return pairs.collate(encoded, np.arange(len(frame)))


def _groups(inputs):
    groups = torch.where(inputs["token_type_ids"] == 1, DOC, QUERY)
    groups[:, 0] = CLS
    return groups.masked_fill(inputs["attention_mask"] == 0, PAD)


def reference_logits(model, inputs, pattern):
    """The Hugging Face model with the pattern's full token-to-token mask."""
    mask = pattern.token_mask(_groups(inputs))[:, None]
    return model(input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"], attention_mask=mask).logits


@pytest.fixture(scope="module")
def batch(shallow, nfcorpus_pairs):
    frame = nfcorpus_pairs[nfcorpus_pairs["qid"].isin(nfcorpus_pairs["qid"].unique()[:3])]
    return _inputs(shallow[1], frame.iloc[::2])


PATTERNS = {
    "paper w=4": AttentionPattern(window=4),
    "w=0": AttentionPattern(window=0),
    "w=1": AttentionPattern(window=1),
    "w=16": AttentionPattern(window=16),
    "w=50 (block 100)": AttentionPattern(window=50),
    "asymmetric, whole doc": AttentionPattern(window=None),
    "cls blind to doc": AttentionPattern(window=2, cls_to_doc=False),
    "doc blind to query and cls": AttentionPattern(window=3, doc_to_query=False, doc_to_cls=False),
    "query sees doc": AttentionPattern(window=4, query_to_doc=True),
    "query sees cls": AttentionPattern(window=8, query_to_cls=True, cls_to_query=False),
}


def test_reference_mask_reaches_the_model(shallow, batch):
    model, _ = shallow
    with torch.no_grad():
        plain = model(**batch).logits
        dense = reference_logits(model, batch, AttentionPattern.dense())
        windowed = reference_logits(model, batch, AttentionPattern(window=0))
    torch.testing.assert_close(dense, plain, atol=1e-5, rtol=0)
    assert (windowed - plain).abs().max() > 5e-3  # 50x the tolerance of the comparisons below


AUTOGRAD = ["paper w=4", "asymmetric, whole doc", "doc blind to query and cls", "query sees doc"]


@pytest.mark.parametrize(
    ("name", "grad"),
    [(name, False) for name in PATTERNS] + [(name, True) for name in AUTOGRAD],
    ids=[f"inference-{name}" for name in PATTERNS] + [f"autograd-{name}" for name in AUTOGRAD],
)
def test_pattern_matches_the_dense_mask_reference(shallow, batch, name, grad):
    """Inference runs layers in place and in chunks; with gradients the same pattern runs as plain operations."""
    model, _ = shallow
    pattern = PATTERNS[name]
    sparse = SparseCrossEncoderModel(model, pattern, block_size=100 if "block 100" in name else None)
    with torch.no_grad():
        expected = reference_logits(model, batch, pattern)
    with torch.set_grad_enabled(grad):
        ours = sparse(**batch).logits
    assert ours.shape == expected.shape == (len(batch["input_ids"]), 1)
    assert ours.requires_grad == grad
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "pattern", [AttentionPattern.dense(), AttentionPattern(window=10_000, query_to_cls=True, query_to_doc=True)]
)
def test_all_flags_and_a_window_over_the_whole_document_equal_the_dense_model(pattern, nfcorpus_pairs):
    model = _load(minilm_path(), num_labels=1)  # all six layers
    inputs = _inputs(AutoTokenizer.from_pretrained(minilm_path()), nfcorpus_pairs.iloc[::10], max_length=256)
    with torch.no_grad():
        expected = model(**inputs).logits
        ours = SparseCrossEncoderModel(model, pattern)(**inputs).logits
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_gradients_match_the_reference(shallow, batch):
    """Training under the pattern: the same gradients as the dense model restricted by the mask."""
    model, _ = shallow
    pattern = AttentionPattern(window=2)
    sparse = SparseCrossEncoderModel(model, pattern)
    batch = {name: tensor[::2] for name, tensor in batch.items()}
    model.zero_grad()
    sparse(**batch).logits.square().sum().backward()
    ours = {name: param.grad.clone() for name, param in model.named_parameters()}
    model.zero_grad()
    reference_logits(model, batch, pattern).square().sum().backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(ours[name], param.grad, atol=1e-4, rtol=1e-3, msg=name)
    assert ours["bert.encoder.layer.0.attention.self.query.weight"].abs().sum() > 0
    model.zero_grad()


def test_dropout_follows_the_wrapped_models_mode(shallow, batch):
    """A training loop switches the Hugging Face model with .train() / .eval(); the wrapper follows it."""
    model, _ = shallow
    sparse = SparseCrossEncoderModel(model)
    assert not sparse.training
    model.train()
    try:
        first, second = sparse(**batch).logits, sparse(**batch).logits
        assert (first - second).abs().max() > 0
    finally:
        model.eval()
    torch.testing.assert_close(sparse(**batch).logits, sparse(**batch).logits)


def test_query_states_are_shared_across_batches(shallow, nfcorpus_pairs):
    """One encoding of each query serves pairs scored in separate batches."""
    model, tokenizer = shallow
    frame = nfcorpus_pairs.iloc[:20]
    pairs = PairTokenizer(tokenizer, query_length=32, doc_length=None, max_length=192)
    encoded = pairs.encode(frame["query"].tolist(), frame["text"].tolist())
    layout = PairLayout.of(tokenizer)
    sparse = SparseCrossEncoderModel(model)
    everything = np.arange(len(frame))
    with torch.no_grad():
        queries = query_tokens(encoded, np.arange(len(encoded.query_ids)), layout)
        states = sparse.encode_queries(queries)
        assert len(states.keys) == model.config.num_hidden_layers
        assert states.keys[0].shape[0] == frame["query"].nunique()
        halves = [everything[:7], everything[7:]]
        shared = torch.cat(
            [sparse.score(doc_tokens(encoded, half, encoded.pair_query[half], layout), states) for half in halves]
        )
        fresh = sparse.score(doc_tokens(encoded, everything, encoded.pair_query, layout), queries)
        expected = reference_logits(model, pairs.collate(encoded, everything), sparse.pattern)
    torch.testing.assert_close(shared, fresh, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared, expected, atol=1e-4, rtol=0)


def test_flex_kernel_matches_the_reference(shallow, batch):
    model, _ = shallow
    pattern = AttentionPattern(window=4)
    with torch.no_grad():
        ours = SparseCrossEncoderModel(model, pattern, kernel="flex")(**batch).logits
        expected = reference_logits(model, batch, pattern)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_electra_classifier(nfcorpus_pairs):
    """ELECTRA: a separate embedding size projected to the hidden size, and its own classification head."""
    from transformers import ElectraConfig, ElectraForSequenceClassification

    config = ElectraConfig(
        vocab_size=30522, embedding_size=64, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=256, num_labels=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = ElectraForSequenceClassification(config).eval()
    inputs = _inputs(AutoTokenizer.from_pretrained(minilm_path()), nfcorpus_pairs.iloc[:8])
    with torch.no_grad():
        dense = SparseCrossEncoderModel(model, AttentionPattern.dense())(**inputs).logits
        torch.testing.assert_close(dense, model(**inputs).logits, atol=1e-4, rtol=0)
        pattern = AttentionPattern(window=2)
        ours = SparseCrossEncoderModel(model, pattern)(**inputs).logits
        torch.testing.assert_close(ours, reference_logits(model, inputs, pattern), atol=1e-4, rtol=0)


def test_unsupported_models_are_rejected():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(n_layers=1, dim=64, hidden_dim=64, n_heads=2))
    with pytest.raises(TypeError, match="BERT-family"):
        SparseCrossEncoderModel(model)


def test_inputs_must_mark_the_document(shallow, batch):
    model, _ = shallow
    sparse = SparseCrossEncoderModel(model)
    with pytest.raises(ValueError, match="token_type_ids"):
        sparse(batch["input_ids"], batch["attention_mask"])
    with pytest.raises(ValueError, match="token type"):
        sparse(batch["input_ids"], batch["attention_mask"], torch.zeros_like(batch["token_type_ids"]))


def test_bad_options_are_rejected(shallow):
    model, _ = shallow
    with pytest.raises(ValueError, match="kernel"):
        SparseCrossEncoderModel(model, kernel="cuda")
    with pytest.raises(ValueError, match="block_size"):
        SparseCrossEncoderModel(model, block_size=0)


def test_extended_positions_interpolate_the_table(shallow_checkpoint):
    model = _load(shallow_checkpoint)
    old = model.bert.embeddings.position_embeddings.weight.detach().clone()
    extend_position_embeddings(model, 1023)
    new = model.bert.embeddings.position_embeddings.weight.detach()
    assert new.shape == (1023, old.shape[1]) and model.config.max_position_embeddings == 1023
    torch.testing.assert_close(new[0], old[0])
    torch.testing.assert_close(new[-1], old[-1])
    torch.testing.assert_close(new[2], old[1])  # 1023 positions over 512: position 2i sits on old row i
    torch.testing.assert_close(new[3], (old[1] + old[2]) / 2)
    with pytest.raises(ValueError, match="already has 1023"):
        extend_position_embeddings(model, 512)


def test_long_documents_with_extended_positions(shallow_checkpoint, nfcorpus_pairs):
    model = extend_position_embeddings(_load(shallow_checkpoint), 2048)
    tokenizer = AutoTokenizer.from_pretrained(shallow_checkpoint)
    long_text = " ".join(nfcorpus_pairs["text"].unique())
    frame = nfcorpus_pairs.iloc[:3].assign(text=[long_text, long_text[: len(long_text) // 2], long_text])
    inputs = _inputs(tokenizer, frame, max_length=2048)
    assert inputs["attention_mask"].sum(1).max() == 2048
    pattern = AttentionPattern(window=4)
    with torch.no_grad():
        ours = SparseCrossEncoderModel(model, pattern)(**inputs).logits
        expected = reference_logits(model, inputs, pattern)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
