import itertools
import json
import pickle
import warnings

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
import torch
from _ranking import assert_fresh_ranks

import pyterrier_shallow as pts
from pyterrier_shallow.anchor import Anchor
from pyterrier_shallow.datasets import vaswani
from pyterrier_shallow.poly import PolyCodes, PolyEncoder, PolyTrainConfig, train_codes
from pyterrier_shallow.train.data import PairsSource
from pyterrier_shallow.train.validation import RerankValidation

NUM_DOCS = 150


@pytest.fixture(scope="module")
def bi_encoder():
    return pts.BiEncoder(warn_truncation=False, doc_length=128)


@pytest.fixture(scope="module")
def corpus():
    """The first 150 real Vaswani abstracts."""
    return list(itertools.islice(vaswani().get_corpus_iter(), NUM_DOCS))


@pytest.fixture(scope="module")
def candidates(corpus):
    """Five real Vaswani queries, each against 30 of the indexed abstracts."""
    topics = vaswani().get_topics().head(5)
    starts = range(0, NUM_DOCS, 30)
    rows = [(qid, query, doc["docno"], doc["text"])
            for (qid, query), start in zip(topics[["qid", "query"]].values, starts)
            for doc in corpus[start : start + 30]]
    return pd.DataFrame(rows, columns=["qid", "query", "docno", "text"]).assign(extra="kept")


@pytest.fixture(scope="module")
def trained_poly(bi_encoder):
    """A poly-encoder (m = 16) whose codes moved away from their start, so that the code attention matters."""
    poly = PolyEncoder.fresh(bi_encoder, num_codes=16, seed=3)
    with torch.no_grad():
        poly.codes.codes.normal_(0, 0.3, generator=torch.Generator().manual_seed(5))
    return poly


@pytest.fixture(scope="module")
def flat_index(bi_encoder, corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("poly") / "vaswani.faiss"
    return pts.FaissIndex(path).indexer(bi_encoder, verbose=False).index(iter(corpus))


def _reference_scores(codes: np.ndarray, tokens: np.ndarray, docs: np.ndarray, scale: float) -> np.ndarray:
    """The poly-encoder formulas written out loop by loop in numpy."""
    def softmax(values):
        values = values - values.max()
        return np.exp(values) / np.exp(values).sum()

    vectors = []
    for code in codes:
        weights = softmax(np.array([code @ token for token in tokens]) * scale)
        vectors.append(sum(weight * token for weight, token in zip(weights, tokens)))
    scores = []
    for doc in docs:
        weights = softmax(np.array([doc @ vector for vector in vectors]) * scale)
        scores.append(doc @ sum(weight * vector for weight, vector in zip(weights, vectors)))
    return np.array(scores)


@pytest.mark.parametrize("scaled", [False, True])
def test_codes_follow_the_formulas(scaled):
    generator = np.random.default_rng(0)
    codes = PolyCodes(5, 8, scaled=scaled)
    with torch.no_grad():
        codes.codes.copy_(torch.from_numpy(generator.normal(size=(5, 8)).astype(np.float32)))
    tokens = [generator.normal(size=(length, 8)).astype(np.float32) for length in (3, 6)]
    docs = generator.normal(size=(4, 8)).astype(np.float32)
    hidden = torch.zeros(2, 6, 8)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    for row, item in enumerate(tokens):
        hidden[row, : len(item)] = torch.from_numpy(item)
        mask[row, : len(item)] = True
    query_vectors = codes.query_vectors(hidden, mask)
    scale = 1 / np.sqrt(8) if scaled else 1.0
    for row, item in enumerate(tokens):
        expected = _reference_scores(codes.codes.detach().numpy(), item, docs, scale)
        got = codes.score(query_vectors[row], torch.from_numpy(docs)).detach().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    batched = codes.score(query_vectors, torch.from_numpy(docs).expand(2, -1, -1)).detach().numpy()
    assert batched.shape == (2, 4)
    np.testing.assert_allclose(batched[1], _reference_scores(codes.codes.detach().numpy(), tokens[1], docs, scale),
                               rtol=1e-5, atol=1e-5)


def test_bad_code_settings():
    with pytest.raises(ValueError, match="num_codes"):
        PolyCodes(0, 8)
    with pytest.raises(ValueError, match="dimension"):
        PolyCodes(4, 0)
    with pytest.raises(ValueError, match="dimensions"):
        PolyCodes(4, 8).query_vectors(torch.zeros(1, 3, 6), torch.ones(1, 3))


def test_untrained_codes_rank_like_the_bi_encoder(bi_encoder, candidates):
    poly = PolyEncoder.fresh(bi_encoder, init_std=1e-3)
    ours = poly.text_scorer()(candidates)
    theirs = bi_encoder.text_scorer()(candidates)
    merged = ours.merge(theirs, on=["qid", "docno"], suffixes=("_poly", "_bi"))
    for _, group in merged.groupby("qid"):
        ratio = group["score_poly"] / group["score_bi"]
        assert ratio.std() / abs(ratio.mean()) < 1e-2  # the same order: one positive factor per query
        assert (group["rank_poly"] == group["rank_bi"]).all()


def test_stored_vectors_agree_with_fresh_encoding(trained_poly, flat_index, candidates):
    stored = trained_poly.reranker(flat_index)(candidates)
    fresh = trained_poly.text_scorer()(candidates)
    np.testing.assert_allclose(stored["score"], fresh["score"], atol=1e-4)
    assert (stored["rank"] == fresh["rank"]).all()
    with_vectors = trained_poly.text_scorer()(trained_poly.bi_encoder.doc_encoder()(candidates))
    np.testing.assert_allclose(with_vectors["score"], fresh["score"], atol=1e-4)


def test_hnsw_and_ivfpq_vectors(trained_poly, flat_index, candidates, tmp_path):
    vectors = flat_index.faiss_index().reconstruct_n(0, NUM_DOCS)
    docnos = [docno.decode() if isinstance(docno, bytes) else str(docno) for docno in flat_index.docnos().tolist()]
    encoded = [{"docno": docno, "doc_vec": vector} for docno, vector in zip(docnos, vectors)]
    exact = trained_poly.reranker(flat_index)(candidates)
    hnsw = pts.FaissIndex(tmp_path / "hnsw").indexer(index_type="hnsw", verbose=False).index(encoded)
    np.testing.assert_allclose(trained_poly.reranker(hnsw)(candidates)["score"], exact["score"], atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ivfpq = pts.FaissIndex(tmp_path / "ivfpq").indexer(index_type="ivfpq", nlist=4, pq_m=48, pq_nbits=4,
                                                            verbose=False).index(encoded)
    approximate = trained_poly.reranker(ivfpq)(candidates)
    assert np.isfinite(approximate["score"]).all()
    assert np.corrcoef(approximate["score"], exact["score"])[0, 1] > 0.75  # 150 training vectors: coarse codes
    reranker = trained_poly.reranker(ivfpq)
    stored = reranker.vectors(["3", "1"])
    ivf = ivfpq.faiss_index()
    np.testing.assert_allclose(stored, np.stack([ivf.reconstruct(2), ivf.reconstruct(0)]), atol=1e-6)


def test_reranker_contract(trained_poly, flat_index, candidates):
    reranker = trained_poly.reranker(flat_index)
    out = reranker(candidates.assign(rank=7, score=1.0))
    assert list(candidates.columns) == [column for column in out.columns if column in candidates.columns]
    assert out["score"].dtype == np.float32
    assert (out["extra"] == "kept").all()
    assert_fresh_ranks(out)
    empty = reranker(candidates.iloc[:0])
    assert len(empty) == 0 and "score" in empty.columns and "rank" in empty.columns
    with pytest.raises(KeyError, match="not in"):
        reranker(candidates.assign(docno="no-such-doc"))
    with pytest.raises(pt.validate.InputValidationError, match="query"):
        reranker(candidates.drop(columns=["query"]))
    with pytest.raises(TypeError, match="qid"):
        reranker(candidates.assign(qid=1))
    with pytest.raises(ValueError, match="empty 'query'"):
        reranker(candidates.assign(query=" "))


def test_text_scorer_bad_input(trained_poly, candidates):
    scorer = trained_poly.text_scorer()
    with pytest.raises(pt.validate.InputValidationError, match="text"):
        scorer(candidates.drop(columns=["text"]))
    with pytest.raises(ValueError, match="missing or non-string 'text'"):
        scorer(candidates.assign(text=None))
    assert len(scorer(candidates.iloc[:0])) == 0


def test_index_of_another_size_is_refused(trained_poly, tmp_path):
    encoded = [{"docno": f"d{i}", "doc_vec": np.ones(8, dtype=np.float32) * i} for i in range(20)]
    small = pts.FaissIndex(tmp_path / "small").indexer(verbose=False).index(encoded)
    with pytest.raises(ValueError, match="dimensional"):
        trained_poly.reranker(small)


def test_save_load_and_pickle(trained_poly, flat_index, candidates, tmp_path):
    expected = trained_poly.reranker(flat_index)(candidates)["score"]
    trained_poly.save(tmp_path / "poly", card={"note": "test"})
    config = json.loads((tmp_path / "poly" / "poly_config.json").read_text())
    assert config["num_codes"] == 16 and config["dimension"] == 384 and config["scaled"] is False
    loaded = PolyEncoder(tmp_path / "poly", doc_length=128)
    assert loaded.card == {"note": "test"}
    np.testing.assert_allclose(loaded.reranker(flat_index)(candidates)["score"], expected, atol=1e-6)
    clone = pickle.loads(pickle.dumps(loaded.reranker(flat_index)))
    np.testing.assert_allclose(clone(candidates)["score"], expected, atol=1e-6)
    assert clone.poly.bi_encoder._model is None or clone.poly.bi_encoder._model is not loaded.bi_encoder._model


def test_missing_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a poly-encoder directory"):
        PolyEncoder(tmp_path)
    (tmp_path / "poly_config.json").write_text('{"format": "other"}')
    (tmp_path / "codes.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="configuration"):
        PolyEncoder(tmp_path)


def _wikiqa_training(shared_data, validation_queries: int) -> tuple[PairsSource, RerankValidation]:
    """WikiQA train pairs, and validation on the first questions of WikiQA test with their own candidates."""
    from pyterrier_shallow.datasets import wikiqa

    dataset = wikiqa(root=shared_data)
    results = dataset.get_results("test")
    held_out = results[results["qid"].isin(set(results["qid"].unique()[:validation_queries]))]
    validation = RerankValidation(held_out, dataset.get_qrels("test"), name="wikiqa:test")
    return PairsSource.from_dataset(dataset, "train"), validation


def test_training_the_codes_improves_validation(bi_encoder, shared_data):
    source, validation = _wikiqa_training(shared_data, 60)
    poly = PolyEncoder.fresh(bi_encoder, num_codes=16)
    before = poly.codes.codes.detach().clone()
    config = PolyTrainConfig(steps=30, queries_per_step=8, num_negatives=3, lr=2e-2, warmup_steps=5, eval_every=10)
    card = train_codes(poly, source, config=config, validation=validation, verbose=False)
    assert [point["step"] for point in card["validation"]["curve"]] == [0, 10, 20, 30]
    assert card["train_loss"]["last_20"] < card["train_loss"]["first_20"]
    assert card["validation"]["curve"][0]["nDCG@10"] > 0.3  # the untrained model is the bi-encoder
    best = max(point["nDCG@10"] for point in card["validation"]["curve"])
    assert best == pytest.approx(validation.evaluate(lambda q, t: poly.score_pairs(q, bi_encoder.encode_docs(t))))
    if card["best_step"] > 0:
        assert not torch.equal(before, poly.codes.codes.detach())
    spread = poly.codes.codes.detach().std(dim=0).mean()
    assert spread > 0.01  # the codes stay apart: they do not collapse into one


def test_keeping_the_last_step(bi_encoder, shared_data):
    source, validation = _wikiqa_training(shared_data, 20)
    poly = PolyEncoder.fresh(bi_encoder, num_codes=4)
    config = PolyTrainConfig(steps=4, queries_per_step=4, num_negatives=2, lr=2e-2, warmup_steps=1, eval_every=2,
                             keep="last")
    card = train_codes(poly, source, config=config, validation=validation, verbose=False)
    assert card["best_step"] == 4 and card["config"]["keep"] == "last"
    last = card["validation"]["curve"][-1]
    assert last["step"] == 4
    assert last["nDCG@10"] == pytest.approx(validation.evaluate(
        lambda q, t: poly.score_pairs(q, bi_encoder.encode_docs(t))))


def test_training_settings_are_checked():
    with pytest.raises(ValueError, match="keep"):
        PolyTrainConfig(keep="first")
    with pytest.raises(ValueError, match="steps"):
        PolyTrainConfig(steps=0)
    with pytest.raises(ValueError, match="in_batch_negatives"):
        PolyTrainConfig(num_negatives=0, in_batch_negatives=False)
    with pytest.raises(ValueError, match="learning rates"):
        PolyTrainConfig(encoder_lr=0)


class TestPolyTextScorerContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        return PolyEncoder.fresh(num_codes=4).text_scorer()


def test_train_poly_command(shared_data, tmp_path):
    from pyterrier_shallow.cli import main

    out = tmp_path / "poly"
    argv = ["train-poly", "--out", str(out), "--codes", "2", "3", "--data", "cranfield", "--validate", "cranfield",
            "--val-queries", "5", "--val-depth", "5", "--pool-depth", "10", "--steps", "2", "--eval-every", "1",
            "--queries-per-step", "2", "--negatives", "2", "--doc-length", "64", "--data-root", str(shared_data),
            "--index-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    with pytest.warns(UserWarning, match="empty 'text'"):  # Cranfield has two empty abstracts
        assert main(argv) == 0
    for num_codes in (2, 3):
        poly = PolyEncoder(out / f"m{num_codes}")
        assert poly.num_codes == num_codes
        assert poly.card["command"].startswith("pyterrier-shallow train-poly --out")
        assert poly.card["validation"]["queries"] == 5
        assert [point["step"] for point in poly.card["validation"]["curve"]] == [0, 1, 2]
        assert poly.bi_encoder.doc_length == 64
    assert main(["train-poly", "--out", str(out / "none"), "--device", "cpu"]) == 2  # no data: a clear error


def test_shipped_default_poly_encoder(candidates):
    from safetensors import safe_open

    from pyterrier_shallow.poly import DEFAULT_POLY_ENCODER_DIR

    poly = PolyEncoder()
    assert poly.path == str(DEFAULT_POLY_ENCODER_DIR)
    assert poly.num_codes == 16 and poly.bi_encoder.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert poly.own_query_tower  # documents keep the encoder's vectors, so its indexes serve unchanged
    card = poly.card
    assert card["command"].startswith("pyterrier-shallow train-poly ") and "--teacher" in card["command"]
    names = " ".join(source["name"] for source in card["data"]["sources"])
    assert "vaswani" not in names and "nfcorpus:test" not in names  # the held-out collections were never trained on
    assert card["validation"]["curve"][0]["step"] == 0
    readme = (DEFAULT_POLY_ENCODER_DIR / "README.md").read_text()
    assert card["command"] in readme and "licen" in readme.lower()
    delta = DEFAULT_POLY_ENCODER_DIR / "query_delta.safetensors"
    assert delta.stat().st_size <= 25 * 2**20
    with safe_open(str(delta), framework="pt") as weights:
        names = list(weights.keys())
        assert {weights.get_slice(name).get_dtype() for name in names} == {"F16"}
    assert not any("word_embeddings" in name for name in names)  # taken from the base
    anchor = Anchor.load(DEFAULT_POLY_ENCODER_DIR)  # mixed with the first stage, as chosen over dense candidates
    assert anchor is not None and anchor.first_stage > 0 and anchor.model > 0
    assert poly.text_scorer().anchoring == anchor and poly.text_scorer(anchor=False).anchoring is None
    scored = poly.text_scorer(anchor=False)(candidates)  # these candidates have no first-stage score
    assert scored["score"].dtype == np.float32 and np.isfinite(scored["score"]).all()
    untuned = PolyEncoder.fresh(poly.bi_encoder)
    untuned.codes.load_state_dict(poly.codes.state_dict())
    assert not np.allclose(untuned.text_scorer()(candidates)["score"], scored["score"])  # the tower was tuned


def test_shipped_default_ranks_above_its_bi_encoder_on_held_out_nfcorpus_queries(shared_data, tmp_path):
    from pyterrier_shallow.bm25 import bm25
    from pyterrier_shallow.datasets import nfcorpus

    dataset = nfcorpus(root=shared_data)
    topics = dataset.get_topics("test").head(40)  # never trained on
    qrels = dataset.get_qrels("test").pipe(lambda frame: frame[frame["qid"].isin(topics["qid"])])
    documents = list(dataset.get_corpus_iter(split="test"))
    candidates = pts.TextLoader(documents)((bm25(documents, tmp_path / "bm25") % 20)(topics))
    poly = PolyEncoder(device="cpu")
    poly.bi_encoder.warn_truncation = False
    texts = candidates.drop_duplicates("docno").set_index("docno")["text"]
    vectors = dict(zip(texts.index, poly.bi_encoder.encode_docs(texts.tolist())))
    candidates = candidates.assign(doc_vec=candidates["docno"].map(vectors))
    queries = dict(zip(topics["qid"], poly.bi_encoder.encode_queries(topics["query"].tolist())))
    cosine = candidates.assign(score=[float(queries[qid] @ vector)
                                      for qid, vector in zip(candidates["qid"], candidates["doc_vec"])])
    scored = poly.text_scorer(anchor=False)(candidates)  # the poly-encoder's own score against its bi-encoder's
    ndcg = {name: pt.Evaluate(pt.model.add_ranks(frame.drop(columns=["rank"])), qrels, metrics=["ndcg_cut_10"])
            for name, frame in (("cosine", cosine), ("poly", scored))}
    # Held out it stands above its bi-encoder: here 0.405 against 0.393 (dense top 100 on all 323 queries: 0.323
    # against 0.307; on Vaswani 0.447 against 0.434, but not over BM25's top 20 there: docs/poly.md).
    assert ndcg["poly"]["ndcg_cut_10"] > ndcg["cosine"]["ndcg_cut_10"] + 0.005


def test_fine_tuning_the_encoder(shared_data, candidates, tmp_path):
    from pyterrier_shallow.datasets import wikiqa

    source = PairsSource.from_dataset(wikiqa(root=shared_data), "train")
    encoder = pts.BiEncoder(warn_truncation=False, query_length=32, doc_length=64)
    poly = PolyEncoder.fresh(encoder, num_codes=4)
    before = {name: value.clone() for name, value in encoder.model.state_dict().items()}
    config = PolyTrainConfig(steps=2, queries_per_step=2, num_negatives=1, warmup_steps=1, eval_every=2,
                             tune="both", encoder_lr=1e-4)
    card = train_codes(poly, source, config=config, verbose=False)
    assert card["encoder_frozen"] is False and card["best_step"] == 2
    after = encoder.model.state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)
    assert poly.codes.codes.device.type == "cpu"
    expected = poly.text_scorer()(candidates)["score"]
    poly.save(tmp_path / "tuned", card=card, save_encoder=True)
    assert (tmp_path / "tuned" / "encoder" / "config.json").is_file()
    loaded = PolyEncoder(tmp_path / "tuned")
    assert loaded.bi_encoder.normalize is True and loaded.bi_encoder.pooling == "mean"
    with pytest.warns(UserWarning, match="fine-tuned encoder"):
        PolyEncoder(tmp_path / "tuned", bi_encoder=pts.BiEncoder())
    loaded.bi_encoder.warn_truncation = False  # the training encoder did not warn either
    np.testing.assert_allclose(loaded.text_scorer()(candidates)["score"], expected, atol=1e-5)
