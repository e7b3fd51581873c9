"""The default cross-encoder shipped in ``pyterrier_shallow/models/cross-encoder``."""

import json

import pyterrier as pt
import pytest
import torch
from safetensors import safe_open

from pyterrier_shallow import CrossEncoder, TextLoader, datasets
from pyterrier_shallow._hf import DEFAULT_CROSS_ENCODER_DIR
from pyterrier_shallow.bm25 import bm25

MODEL_DIR = DEFAULT_CROSS_ENCODER_DIR
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not (MODEL_DIR / "config.json").is_file(), reason="no default cross-encoder shipped"),
]



def test_the_model_folder_is_complete_and_small():
    for name in ("config.json", "delta.json", "delta.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "training_card.json", "README.md"):
        assert (MODEL_DIR / name).is_file(), name
    assert (MODEL_DIR / "delta.safetensors").stat().st_size <= 40 * 2**20
    with safe_open(str(MODEL_DIR / "delta.safetensors"), framework="pt") as weights:
        names = list(weights.keys())
        dtypes = {weights.get_slice(name).get_dtype() for name in names}
    assert dtypes == {"F16"}
    assert "gates" in names and "bert.embeddings.word_embeddings.weight" not in names  # taken from the base
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "shallow-gated-bert"  # the warm-started cross-encoder
    assert config.get("num_labels") == 1 or len(config.get("id2label", {"0": 0})) == 1


def test_the_card_records_the_command_and_the_data():
    card = json.loads((MODEL_DIR / "training_card.json").read_text())
    assert card["command"].startswith("pyterrier-shallow train ")
    assert "--teacher hybrid" in card["command"]
    names = " ".join(source["name"] for source in card["data"].get("sources", [card["data"]]))
    assert "vaswani" not in names  # the held-out collection was never trained on
    readme = (MODEL_DIR / "README.md").read_text()
    assert card["command"] in readme
    assert "licen" in readme.lower()


def test_loads_by_default_in_float32_on_cpu():
    model = CrossEncoder(device="cpu")
    assert model.dtype == torch.float32
    frame = pt.new.ranked_documents([[0.0, 0.0]], qid=["q"], docno=[["a", "b"]]).assign(
        query="measurement of dielectric constants of liquids",
        text=["dielectric constant measurements of polar liquids at microwave frequencies",
              "a survey of galaxy clusters observed at radio wavelengths"],
    )
    scored = model.transform(frame)
    assert scored["score"].dtype == "float32"
    assert scored.set_index("docno").loc["a", "score"] > scored.set_index("docno").loc["b", "score"]


def test_the_card_records_the_gates():
    card = json.loads((MODEL_DIR / "training_card.json").read_text())
    assert len(card["gates"]) == json.loads((MODEL_DIR / "config.json").read_text())["num_hidden_layers"]
    assert max(layer["max"] for layer in card["gates"]) > 0  # cross-attention opened


def test_ranks_better_than_bm25_on_held_out_vaswani_queries(tmp_path):
    vaswani = datasets.vaswani()  # bundled with the package: this check runs without ../shared too
    first_stage = bm25(vaswani, tmp_path / "bm25") % 20
    topics = vaswani.get_topics().head(40)
    table = pt.Experiment(
        [first_stage, first_stage >> TextLoader(vaswani) >> CrossEncoder(device="cpu", warn_truncation=False)],
        topics, vaswani.get_qrels(), [pt.measures.nDCG @ 10], names=["bm25", "reranked"], plan="tree", verbose=False,
    ).set_index("name")
    assert table.loc["reranked", "nDCG@10"] > table.loc["bm25", "nDCG@10"]
