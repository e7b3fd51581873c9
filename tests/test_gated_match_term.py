"""The gated cross-encoder's token-match term: zero at the warm start, and equal to an independent reference."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _gated_helpers import gated_logits
from transformers import AutoModel, AutoTokenizer

import pyterrier_shallow as pts
from pyterrier_shallow._hf import minilm_path
from pyterrier_shallow._pair_tokenizer import PairTokenizer
from pyterrier_shallow._tokenizers import prepare_tokenizer
from pyterrier_shallow.gated import gated_from_bi_encoder, idf_term_weights, load_delta, save_delta

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURE = Path(__file__).parent / "fixtures" / "beir_nfcorpus"


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return pd.read_json(FIXTURE / "corpus.jsonl", lines=True)


@pytest.fixture(scope="module")
def pairs(fixture_nfcorpus_pairs):
    return fixture_nfcorpus_pairs


@pytest.fixture(scope="module")
def matched(corpus):
    texts = (corpus["title"] + " " + corpus["text"]).tolist()
    model, tokenizer = gated_from_bi_encoder(num_layers=2, match_texts=texts)
    prepare_tokenizer(tokenizer, max_length=512)
    return model, tokenizer


def test_idf_weights_follow_document_frequency(corpus):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    texts = (corpus["title"] + " " + corpus["text"]).tolist()
    weights = idf_term_weights(tokenizer, texts)
    assert weights.shape == (len(tokenizer),) and weights.dtype == torch.float32
    assert float(weights[tokenizer.cls_token_id]) == 0.0 and float(weights[tokenizer.sep_token_id]) == 0.0
    the, never = tokenizer.convert_tokens_to_ids(["the", "zeppelin"])
    holding_the = sum("the" in tokenizer.tokenize(text)[:512] for text in texts)
    expected = math.log1p((len(texts) - holding_the + 0.5) / (holding_the + 0.5))
    assert float(weights[the]) == pytest.approx(expected, rel=1e-5)
    assert float(weights[never]) == pytest.approx(math.log1p((len(texts) + 0.5) / 0.5), rel=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        idf_term_weights(tokenizer, ["", "  "])


def test_warm_start_with_the_term_still_scores_as_the_bi_encoder(matched, pairs):
    model, tokenizer = matched
    plain, _ = gated_from_bi_encoder(num_layers=2)
    assert float(model.match_weight.detach()) == 0.0
    expected = gated_logits(plain.eval(), tokenizer, pairs)
    np.testing.assert_allclose(gated_logits(model, tokenizer, pairs), expected, atol=1e-5)


def test_term_equals_an_independent_maxsim_reference(matched, pairs):
    """With closed gates the document states are the bi-encoder's own: the term is a weighted MaxSim over them."""
    model, tokenizer = matched
    with torch.no_grad():
        model.match_weight.fill_(3.0)
    try:
        logits = gated_logits(model, tokenizer, pairs)
    finally:
        with torch.no_grad():
            model.match_weight.zero_()
    encoder = AutoModel.from_pretrained(minilm_path(), num_hidden_layers=2).eval()
    raw = AutoTokenizer.from_pretrained(minilm_path())
    expected = []
    for row in pairs.itertuples():
        with torch.no_grad():
            q = raw(row.query, truncation=True, max_length=34, return_tensors="pt")
            d = raw(row.text, truncation=True, max_length=202, return_tensors="pt")
            q_states = encoder(**q).last_hidden_state[0]
            d_states = encoder(**d).last_hidden_state[0]
        cosine = torch.nn.functional.cosine_similarity(q_states.mean(0), d_states.mean(0), dim=0)
        q_unit = torch.nn.functional.normalize(q_states, dim=-1)
        d_unit = torch.nn.functional.normalize(d_states[1:], dim=-1)  # every document token but [CLS]
        best = (q_unit @ d_unit.T).amax(-1)
        weights = model.term_weights[q["input_ids"][0]]
        expected.append(20.0 * (float(cosine) + 3.0 * float((best * weights).sum() / weights.sum())))
    np.testing.assert_allclose(logits, expected, atol=1e-3)


def test_match_weight_gets_a_gradient_at_zero(matched, pairs):
    model, tokenizer = matched
    pair_tokens = PairTokenizer(tokenizer, query_length=32, doc_length=200, max_length=512)
    batch = pair_tokens.collate(pair_tokens.encode(pairs["query"].tolist(), pairs["text"].tolist()),
                                np.arange(len(pairs)))
    model.train()
    try:
        model.zero_grad()
        model(**batch).logits.std().backward()
        assert model.match_weight.grad is not None and float(model.match_weight.grad.abs()) > 0
    finally:
        model.zero_grad()
        model.eval()


def test_term_weights_travel_with_the_delta(matched, pairs, tmp_path):
    model, tokenizer = matched
    with torch.no_grad():
        model.match_weight.fill_(2.0)
    try:
        save_delta(model, tokenizer, tmp_path / "delta")
        loaded, _ = load_delta(tmp_path / "delta")
        assert loaded.config.match_term
        torch.testing.assert_close(loaded.term_weights, model.term_weights.half().float())
        ranker = pts.CrossEncoder(tmp_path / "delta", query_length=32, doc_length=200, warn_truncation=False)
        scores = ranker.transform(pairs)["score"].to_numpy()
        np.testing.assert_allclose(scores, gated_logits(model, tokenizer, pairs), atol=0.05)
    finally:
        with torch.no_grad():
            model.match_weight.zero_()


def test_term_weights_are_checked(matched):
    model, _ = matched
    with pytest.raises(ValueError, match="shape"):
        model.set_term_weights(torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        model.set_term_weights(-torch.ones_like(model.term_weights))
    plain, _ = gated_from_bi_encoder(num_layers=1)
    with pytest.raises(ValueError, match="no token-match term"):
        plain.set_term_weights(torch.ones(plain.config.vocab_size))


def test_a_shipped_model_can_weigh_terms_as_the_ranked_collection_does(corpus, pairs):
    from pyterrier_shallow._hf import SHALLOW_CROSS_ENCODER_DIR
    from pyterrier_shallow.gated import use_corpus_term_weights

    if not (SHALLOW_CROSS_ENCODER_DIR / "config.json").is_file():
        pytest.skip("no 2-layer model shipped")
    reranker = pts.CrossEncoder(SHALLOW_CROSS_ENCODER_DIR, warn_truncation=False, anchor=False)
    shipped = reranker.network.term_weights.clone()
    before = reranker(pairs)["score"].to_numpy()
    texts = (corpus["title"] + " " + corpus["text"]).tolist()
    assert use_corpus_term_weights(reranker, texts) is reranker
    torch.testing.assert_close(reranker.network.term_weights, idf_term_weights(reranker.tokenizer, texts))
    assert not torch.equal(reranker.network.term_weights, shipped)
    assert not np.allclose(reranker(pairs)["score"].to_numpy(), before)
    with pytest.raises(ValueError, match="no token-match term"):
        use_corpus_term_weights(pts.CrossEncoder(pts.gated.DEEP_MODEL_DIR), texts)
