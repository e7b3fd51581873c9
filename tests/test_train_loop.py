import json

import numpy as np
import pytest
import torch
from pyterrier_pisa import PisaIndex
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pyterrier_shallow import CrossEncoder, datasets
from pyterrier_shallow.train import (
    DistillationSource,
    NegativePool,
    RankingSource,
    RerankValidation,
    TrainConfig,
    TrainingSource,
    docs_from_corpus,
    init_cross_encoder,
    load_cross_encoder,
    make_loss,
    train,
)
from pyterrier_shallow.train._forward import PairForward

QUERY_LENGTH, DOC_LENGTH = 16, 48
TINY = dict(queries_per_step=3, num_negatives=3, micro_batch_size=16, query_length=QUERY_LENGTH,
            doc_length=DOC_LENGTH, lr=1e-4, head_lr=1e-3, warmup_steps=1, freeze_embeddings=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    return init_cross_encoder("minilm", tmp_path_factory.mktemp("init") / "model", num_layers=2, max_length=128)


@pytest.fixture(scope="module")
def vaswani():
    dataset = datasets.vaswani()
    return dataset, docs_from_corpus(dataset.get_corpus_iter())


@pytest.fixture(scope="module")
def bm25(vaswani, tmp_path_factory):
    index = PisaIndex(str(tmp_path_factory.mktemp("vaswani") / "index"), text_field="text", threads=1)
    index.index(vaswani[0].get_corpus_iter())
    return index.bm25(num_results=20)


@pytest.fixture(scope="module")
def source(vaswani, bm25):
    dataset, docs = vaswani
    topics, qrels = dataset.get_topics().iloc[:5], dataset.get_qrels()
    pool = NegativePool.mine(bm25, topics, qrels, depth=20, corpus_docnos=list(docs))
    return RankingSource(topics, qrels, docs, pool, name="vaswani-5")


@pytest.fixture(scope="module")
def validation(vaswani, bm25):
    dataset, docs = vaswani
    return RerankValidation.from_first_stage(bm25, dataset.get_topics().iloc[80:84], dataset.get_qrels(), docs,
                                             depth=5)


class RepeatedBatch(TrainingSource):
    """Gives the same groups at every step (to check that the loop fits them)."""

    name = "repeated"

    def __init__(self, groups):
        self.groups, self.position = groups, 0

    def __len__(self):
        return len(self.groups)

    def sample(self, rng, num_negatives):
        group = self.groups[self.position % len(self.groups)]
        self.position += 1
        return group


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_loss_decreases_on_a_repeated_batch(init_dir, source, tmp_path):
    rng = np.random.default_rng(0)
    repeated = RepeatedBatch([source.sample(rng, 3) for _ in range(3)])
    losses = []
    config = TrainConfig(steps=6, eval_every=6, **{**TINY, "lr": 5e-4, "head_lr": 5e-3})
    train(init_dir, repeated, tmp_path / "out", config=config, on_step=lambda step, loss: losses.append(loss),
          verbose=False)
    assert len(losses) == 6
    assert np.mean(losses[-2:]) < 0.8 * losses[0]


@pytest.mark.parametrize("loss_name", ["softmax-ce", "margin-mse"])
def test_micro_batches_give_the_exact_gradient(init_dir, source, loss_name):
    model, tokenizer, _ = load_cross_encoder(init_dir)
    model.eval()  # no dropout, so one pass and the two-pass accumulation see the same network
    model.get_input_embeddings().weight.requires_grad_(False)
    groups = [source.sample(np.random.default_rng(7), 3) for _ in range(3)]
    queries = [group.query for group in groups for _ in group.texts]
    texts = [text for group in groups for text in group.texts]
    teacher = torch.linspace(-2, 2, len(texts)).view(3, 4)
    loss = make_loss(loss_name)

    def gradients(micro_batch_size):
        model.zero_grad()
        forward = PairForward(model, tokenizer, query_length=QUERY_LENGTH, doc_length=DOC_LENGTH,
                              micro_batch_size=micro_batch_size, device=torch.device("cpu"))
        value = forward.backward(queries, texts, group_size=4, loss_fn=lambda logits: loss(
            logits, pool_sizes=torch.full((3,), 20.0), teacher_scores=teacher))
        return value, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    whole_loss, whole = gradients(64)
    split_loss, split = gradients(5)
    assert split_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.keys() == split.keys()
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-6)


def test_trained_directory_loads_back_and_reproduces_validation(init_dir, source, validation, tmp_path):
    output = tmp_path / "model"
    config = TrainConfig(steps=4, eval_every=2, **TINY)
    result = train(init_dir, source, output, config=config, validation=validation, command="train --test",
                   verbose=False)
    assert sorted(p.name for p in output.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "training_card.json",
    ]
    assert [point["step"] for point in result.curve] == [0, 2, 4]
    best = max(result.curve, key=lambda point: point["nDCG@10"])
    assert result.best_score == best["nDCG@10"] and result.best_step == best["step"]

    reranker = CrossEncoder(str(output), query_length=QUERY_LENGTH, doc_length=DOC_LENGTH, warn_truncation=False)
    assert validation.evaluate(reranker.score_pairs) == pytest.approx(result.best_score, abs=1e-6)

    model = AutoModelForSequenceClassification.from_pretrained(output).eval()
    tokenizer = AutoTokenizer.from_pretrained(output)
    query = " ".join(validation.candidates["query"][0].split()[:5])
    text = " ".join(validation.candidates["text"][0].split()[:8])
    inputs = tokenizer(query, text, return_tensors="pt")
    assert len(tokenizer(query)["input_ids"]) < QUERY_LENGTH and len(tokenizer(text)["input_ids"]) < DOC_LENGTH
    with torch.no_grad():
        logit = model(**inputs).logits[0, 0].item()
    assert reranker.score_pairs([query], [text])[0] == pytest.approx(logit, abs=1e-5)

    card = json.loads((output / "training_card.json").read_text())
    assert card["command"] == "train --test"
    assert card["loss"] == {"name": "gbce", "t": 0.75} and card["num_negatives"] == 3
    assert card["steps"] == 4 and card["saved_step"] == result.best_step
    assert card["data"]["name"] == "vaswani-5" and card["data"]["queries"] == 5
    assert card["validation"]["queries"] == validation.num_queries and card["validation"]["depth"] == 5
    assert card["base_model"]["init"]["num_layers"] == 2
    readme = (output / "README.md").read_text()
    assert "train --test" in readme and "| 4 |" in readme and "gbce (t=0.75)" in readme
    with pytest.raises(FileExistsError, match="already holds a trained model"):
        train(init_dir, source, output, config=config, verbose=False)


def test_early_stopping_keeps_the_best_checkpoint(init_dir, source, validation, tmp_path):
    config = TrainConfig(steps=6, eval_every=1, patience=2, min_delta=1.0, **TINY)  # no gain can reach min_delta
    result = train(init_dir, source, tmp_path / "out", config=config, validation=validation, verbose=False)
    assert result.stopped_early and result.steps == 2 and result.best_step == 0
    assert [point["step"] for point in result.curve] == [0, 1, 2]
    initial, saved = _weights(init_dir), _weights(tmp_path / "out")
    for name in initial:  # the step-0 model was the best, so the saved weights are the initial ones
        torch.testing.assert_close(saved[name], initial[name])
    card = json.loads((tmp_path / "out" / "training_card.json").read_text())
    assert card["stopped_early"] and card["saved_step"] == 0 and "(stopped early)" in (
        tmp_path / "out" / "README.md").read_text()


def test_a_stop_file_ends_the_run_and_publishes_the_best_checkpoint(init_dir, source, validation, tmp_path):
    from pyterrier_shallow.train.loop import STOP_FILE

    out = tmp_path / "out"

    def ask_to_stop(step, loss):
        if step == 2:
            (out / "_training" / STOP_FILE).touch()

    config = TrainConfig(steps=50, eval_every=2, **TINY)
    result = train(init_dir, source, out, config=config, validation=validation, on_step=ask_to_stop, verbose=False)
    assert result.stopped_early and result.steps == 3  # the step under way when the file appeared ends the run
    assert [point["step"] for point in result.curve] == [0, 2]
    card = json.loads((out / "training_card.json").read_text())
    assert card["stopped_early"] and card["saved_step"] in (0, 2)
    assert not (out / "_training").exists()


def test_resume_continues_from_the_checkpoint(init_dir, source, tmp_path):
    config = TrainConfig(steps=4, eval_every=2, **TINY)
    straight = train(init_dir, source, tmp_path / "straight", config=config, verbose=False)

    def interrupt(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(init_dir, source, resumed_dir, config=config, on_step=interrupt, verbose=False)
    state = torch.load(resumed_dir / "_training" / "last" / "trainer_state.pt", weights_only=False)
    assert state["progress"]["step"] == 2
    assert not (resumed_dir / "training_card.json").exists()

    with pytest.raises(ValueError, match="lr: 0.0001 -> 0.0002"):
        train(init_dir, source, resumed_dir, config=TrainConfig(steps=4, eval_every=2, **{**TINY, "lr": 2e-4}),
              verbose=False)

    steps_run = []
    resumed = train(init_dir, source, resumed_dir, config=config, verbose=False,
                    on_step=lambda step, loss: steps_run.append(step))
    assert steps_run == [3, 4]
    assert resumed.steps == straight.steps == 4
    assert [p["loss"] for p in resumed.curve] == pytest.approx([p["loss"] for p in straight.curve], rel=1e-5)
    expected, actual = _weights(tmp_path / "straight"), _weights(resumed_dir)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)
    assert not (resumed_dir / "_training").exists()


def test_distillation_from_a_teacher(init_dir, vaswani, bm25, shallow_checkpoint, tmp_path):
    dataset, docs = vaswani
    teacher = CrossEncoder(str(shallow_checkpoint), query_length=QUERY_LENGTH, doc_length=DOC_LENGTH,
                           warn_truncation=False)
    distil = DistillationSource.from_first_stage(bm25, teacher, dataset.get_topics().iloc[:4], docs, depth=8)
    rng = np.random.default_rng(0)
    repeated = RepeatedBatch([distil.sample(rng, 3) for _ in range(3)])
    losses = []
    config = TrainConfig(steps=5, eval_every=5, **{**TINY, "lr": 5e-4, "head_lr": 5e-3})
    train(init_dir, repeated, tmp_path / "student", loss=make_loss("margin-mse"), config=config, verbose=False,
          on_step=lambda step, loss: losses.append(loss))
    assert np.isfinite(losses).all() and np.mean(losses[-2:]) < losses[0]
    card = json.loads((tmp_path / "student" / "training_card.json").read_text())
    assert card["loss"] == {"name": "margin-mse"}


def test_training_a_loaded_model_saves_a_tokenizer_without_fixed_padding(source, tmp_path):
    model, tokenizer, _ = load_cross_encoder("minilm", num_layers=1)
    assert tokenizer.backend_tokenizer.padding is not None  # the offline checkpoint pads everything to 128
    train((model, tokenizer), source, tmp_path / "out", config=TrainConfig(steps=1, eval_every=1, **TINY),
          verbose=False)
    saved = json.loads((tmp_path / "out" / "tokenizer.json").read_text())
    assert saved["padding"] is None and saved["truncation"] is None
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").config.num_hidden_layers == 1


def test_distillation_needs_teacher_scores(init_dir, source, tmp_path):
    config = TrainConfig(steps=1, eval_every=1, **TINY)
    with pytest.raises(ValueError, match="without teacher scores"):
        train(init_dir, source, tmp_path / "out", loss=make_loss("margin-mse"), config=config, verbose=False)


def test_bad_configuration():
    with pytest.raises(ValueError, match="steps must be at least 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(steps=10, warmup_steps=11)
    with pytest.raises(ValueError, match="learning rates"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)


def test_training_under_the_sparse_pattern(init_dir, source, validation, tmp_path):
    from pyterrier_shallow import SparseCrossEncoder

    config = TrainConfig(steps=2, eval_every=2, window=1, **TINY)
    result = train(init_dir, source, tmp_path / "sparse", config=config, validation=validation, verbose=False)
    dense = train(init_dir, source, tmp_path / "dense", config=TrainConfig(steps=2, eval_every=2, **TINY),
                  validation=validation, verbose=False)
    card = json.loads((tmp_path / "sparse" / "training_card.json").read_text())
    assert card["config"]["window"] == 1
    sparse_weights = load_file(str(tmp_path / "sparse" / "model.safetensors"))
    dense_weights = load_file(str(tmp_path / "dense" / "model.safetensors"))
    # Same seed, data and steps: only the attention differed, and so did the gradients.
    assert any(not torch.equal(sparse_weights[name], dense_weights[name]) for name in sparse_weights)
    # The validation scores were measured under the pattern: they match SparseCrossEncoder's ranking.
    if result.best_step == 2:
        scorer = SparseCrossEncoder(tmp_path / "sparse", window=1, query_length=QUERY_LENGTH, doc_length=DOC_LENGTH,
                                    warn_truncation=False)
        measured = validation.evaluate(lambda queries, texts: scorer.score_pairs(queries, texts))
        assert measured == pytest.approx(result.best_score, abs=1e-6)
    assert dense.steps == result.steps == 2
    with pytest.raises(ValueError, match="window"):
        TrainConfig(window=-1)


def test_training_a_gated_cross_encoder_opens_its_gates(source, validation, tmp_path):
    from pyterrier_shallow.gated import GatedBertRanker, init_gated_cross_encoder

    init = init_gated_cross_encoder(None, tmp_path / "init", num_layers=2, max_length=128)
    config = TrainConfig(steps=3, eval_every=3, **{**TINY, "head_lr": 5e-2}, scale_lr=1e-2)
    result = train(init, source, tmp_path / "out", loss=make_loss("softmax-ce"), config=config,
                   validation=validation, command="train --gated", verbose=False)
    card = json.loads((tmp_path / "out" / "training_card.json").read_text())
    assert [gate["layer"] for gate in card["gates"]] == [0, 1]
    if result.best_step > 0:
        assert max(gate["max"] for gate in card["gates"]) > 0.01
    assert "Cross-attention gates" in (tmp_path / "out" / "README.md").read_text()
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert card["score_parameters"] == {"scale": pytest.approx(float(saved["scale"]), abs=1e-4)}
    assert "Learnt score parameters" in (tmp_path / "out" / "README.md").read_text()
    reranker = CrossEncoder(str(tmp_path / "out"), query_length=QUERY_LENGTH, doc_length=DOC_LENGTH,
                            warn_truncation=False)
    assert isinstance(reranker.network, GatedBertRanker)
    assert validation.evaluate(reranker.score_pairs) == pytest.approx(result.best_score, abs=1e-6)


def test_training_an_anchored_model_learns_and_saves_its_weights(vaswani, bm25, validation, tmp_path):
    from pyterrier_shallow import Anchor
    from pyterrier_shallow.gated import init_gated_cross_encoder
    from pyterrier_shallow.train import HybridTeacher

    dataset, docs = vaswani
    init = init_gated_cross_encoder(None, tmp_path / "init", num_layers=2, max_length=128)
    teacher = HybridTeacher(dense_weight=1.0)
    distil = DistillationSource.from_first_stage(bm25, teacher, dataset.get_topics().iloc[:6], docs, depth=10)
    assert distil.sample(np.random.default_rng(0), 3).first_stage_scores is not None  # BM25's, beside the teacher's
    config = TrainConfig(steps=4, eval_every=2, anchor=(1.0, 0.5), **{**TINY, "head_lr": 5e-2}, scale_lr=5e-2)
    result = train(init, distil, tmp_path / "out", loss=make_loss("soft-label"), config=config,
                   validation=validation, verbose=False)
    anchor = Anchor.load(tmp_path / "out")
    assert anchor is not None and anchor.source == "learnt in training"
    if result.best_step > 0:  # the weights moved from where they started
        assert (anchor.first_stage, anchor.model) != (1.0, 0.5)
    card = json.loads((tmp_path / "out" / "training_card.json").read_text())
    assert card["anchor"] == anchor.to_dict() and card["config"]["anchor"] == [1.0, 0.5]
    assert "Anchored scores" in (tmp_path / "out" / "README.md").read_text()
    reranker = CrossEncoder(str(tmp_path / "out"), query_length=QUERY_LENGTH, doc_length=DOC_LENGTH,
                            warn_truncation=False)
    assert reranker.anchoring == anchor
    assert validation.evaluate(reranker.score_pairs, anchor=anchor) == pytest.approx(result.best_score, abs=1e-6)
    # validated at step 0 with the initial mix, the closed gates and BM25
    assert result.curve[0]["nDCG@10"] == pytest.approx(
        validation.evaluate(CrossEncoder(str(init), query_length=QUERY_LENGTH, doc_length=DOC_LENGTH,
                                         warn_truncation=False).score_pairs,
                            anchor=Anchor(first_stage=1.0, model=0.5)), abs=1e-6)


def test_an_anchored_model_needs_first_stage_scores(init_dir, source, tmp_path):
    config = TrainConfig(steps=1, eval_every=1, anchor=(1.0, 1.0), **TINY)
    with pytest.raises(ValueError, match="without them"):
        train(init_dir, source, tmp_path / "out", loss=make_loss("gbce"), config=config, verbose=False)
    with pytest.raises(ValueError, match="two positive weights"):
        TrainConfig(anchor=(1.0, 0.0))
