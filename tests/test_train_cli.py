import argparse
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pyterrier_shallow.train.cli_args import DataSpec, build_parser, main_train, parse_data_spec

TINY = ["--steps", "2", "--eval-every", "1", "--negatives", "3", "--queries-per-step", "2", "--query-length", "16",
        "--doc-length", "48", "--pool-depth", "20", "--warmup", "1", "--threads", "1", "--freeze-embeddings",
        "--quiet"]


def test_data_specs():
    assert parse_data_spec("nfcorpus:dev") == DataSpec("ranking", "nfcorpus", "dev", None)
    assert parse_data_spec("wikiqa:train@0.5") == DataSpec("pairs", "wikiqa", "train", 0.5)
    assert parse_data_spec("pseudo-title:cranfield@2") == DataSpec("pseudo-title", "cranfield", None, 2.0)
    assert parse_data_spec("ranking:wikiqa:test") == DataSpec("ranking", "wikiqa", "test", None)
    assert parse_data_spec("beir:/data/scifact:test") == DataSpec("ranking", "beir:/data/scifact", "test", None)
    for bad in ("nfcorpus@x", "nfcorpus@-1", "pairs:", "a:b:c", "beir"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_data_spec(bad)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--data", "vaswani"])  # --out is required


def test_train_command_mixes_sources_and_holds_out_validation_queries(shared_data, tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["--out", str(out), "--data", "vaswani@2", "--data", "wikiqa:train@1", "--data",
            "pseudo-title:cranfield@1", "--max-pseudo-queries", "20", "--validate", "vaswani", "--val-queries", "3",
            "--val-depth", "5", "--data-root", str(shared_data), "--index-dir", str(tmp_path / "cache"), *TINY]
    assert main_train(argv) == 0
    printed = capsys.readouterr().out
    assert f"saved {out}" in printed and "nDCG@10" in printed

    card = json.loads((out / "training_card.json").read_text())
    assert card["command"].startswith("pyterrier-shallow train --out ")
    assert [source["name"] for source in card["data"]["sources"]] == [
        "vaswani", "wikiqa:train", "pseudo:cranfield (title)"]
    assert [source["probability"] for source in card["data"]["sources"]] == pytest.approx([0.5, 0.25, 0.25])
    assert card["data"]["sources"][0]["queries"] == 93 - 3  # the validation queries are held out
    assert card["data"]["sources"][2]["queries"] == 20
    assert card["validation"]["queries"] == 3
    assert [point["step"] for point in card["curve"]] == [0, 1, 2]
    assert card["base_model"]["init"]["num_layers"] == 2
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.model_max_length == 16 + 48 + 3
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 2 and model.config.num_labels == 1
    assert torch.get_num_threads() >= 1


def test_train_command_errors(shared_data, tmp_path):
    base = ["--out", str(tmp_path / "m"), "--data-root", str(shared_data), "--index-dir", str(tmp_path / "c"), *TINY]
    with pytest.raises(ValueError, match="--distill needs --teacher"):
        main_train([*base, "--data", "vaswani", "--distill", "vaswani"])
    with pytest.raises(ValueError, match="@WEIGHT to every data source"):
        main_train([*base, "--data", "vaswani@1", "--data", "pseudo-title:cranfield", "--max-pseudo-queries", "5"])


def test_train_command_builds_a_symmetric_gated_model_with_the_token_match_term(shared_data, tmp_path):
    from pyterrier_shallow.gated import GatedBertRanker, register_auto_classes

    out = tmp_path / "gated"
    argv = ["--out", str(out), "--init", "gated:minilm", "--layers", "1", "--match-term", "--query-gates",
            "--data", "cranfield", "--data-root", str(shared_data), "--index-dir", str(tmp_path / "cache"), *TINY]
    with pytest.warns(UserWarning, match="empty 'text'"):  # Cranfield has two empty abstracts
        assert main_train(argv) == 0
    register_auto_classes()
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert isinstance(model, GatedBertRanker) and model.config.match_term and model.config.query_gates
    tokenizer = AutoTokenizer.from_pretrained(out)
    weights = model.term_weights
    assert float(weights[tokenizer.cls_token_id]) == 0.0
    common, rare = tokenizer.convert_tokens_to_ids(["the", "wing"])
    assert 0 < float(weights[common]) < float(weights[rare])  # document frequencies of Cranfield's documents
    card = json.loads((out / "training_card.json").read_text())
    assert card["base_model"]["init"]["match_term"] is True
    assert card["score_parameters"]["match_weight"] == pytest.approx(model.match_weight.item(), abs=1e-4)
    assert card["base_model"]["init"]["query_gates"] is True and len(card["query_gates"]) == 1


def test_match_term_and_query_gates_need_a_gated_model(shared_data, tmp_path):
    base = ["--out", str(tmp_path / "m"), "--data-root", str(shared_data), "--index-dir", str(tmp_path / "c"), *TINY]
    with pytest.warns(UserWarning, match="empty 'text'"):  # Cranfield has two empty abstracts
        with pytest.raises(ValueError, match="--match-term needs a gated model"):
            main_train([*base, "--data", "cranfield", "--match-term"])
    with pytest.warns(UserWarning, match="empty 'text'"):
        with pytest.raises(ValueError, match="--query-gates needs a gated model"):
            main_train([*base, "--data", "cranfield", "--query-gates"])
