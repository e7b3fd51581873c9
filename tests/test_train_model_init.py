import json

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from pyterrier_shallow._hf import minilm_path
from pyterrier_shallow.train import head_parameter_names, init_cross_encoder
from pyterrier_shallow.train.model_init import read_init_info


@pytest.fixture(scope="module")
def two_layers(tmp_path_factory):
    return init_cross_encoder("minilm", tmp_path_factory.mktemp("init") / "model", num_layers=2, max_length=256)


def test_first_layers_are_copied_and_the_head_is_fresh(two_layers):
    model = AutoModelForSequenceClassification.from_pretrained(two_layers)
    assert model.config.num_labels == 1 and model.config.num_hidden_layers == 2
    source = AutoModel.from_pretrained(minilm_path()).state_dict()
    saved = model.state_dict()
    for layer in (0, 1):
        key = f"encoder.layer.{layer}.attention.self.query.weight"
        torch.testing.assert_close(saved[f"bert.{key}"], source[key])
    torch.testing.assert_close(saved["bert.embeddings.word_embeddings.weight"],
                               source["embeddings.word_embeddings.weight"])
    assert "encoder.layer.2.attention.self.query.weight" in source
    assert not any(".layer.2." in key for key in saved)
    assert head_parameter_names(model) == ["classifier.weight", "classifier.bias"]
    info = read_init_info(two_layers)
    assert info["fresh_weights"] == ["classifier.bias", "classifier.weight"]
    assert info["num_layers"] == 2 and info["checkpoint"] == "minilm" and info["max_length"] == 256


def test_saved_tokenizer_has_no_fixed_padding_or_truncation(two_layers):
    saved = json.loads((two_layers / "tokenizer.json").read_text())
    assert saved["padding"] is None and saved["truncation"] is None
    original = json.loads((minilm_path() / "tokenizer.json").read_text())
    assert original["padding"] is not None  # the fix is needed: the source pads everything to 128
    config = json.loads((two_layers / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 256 and "max_length" not in config
    tokenizer = AutoTokenizer.from_pretrained(two_layers)
    assert len(tokenizer("a short query")["input_ids"]) == 5
    assert len(tokenizer("word " * 300)["input_ids"]) == 302


def test_head_is_seeded(tmp_path):
    first = init_cross_encoder("minilm", tmp_path / "a", num_layers=1, seed=5)
    second = init_cross_encoder("minilm", tmp_path / "b", num_layers=1, seed=5)
    third = init_cross_encoder("minilm", tmp_path / "c", num_layers=1, seed=6)
    heads = [AutoModelForSequenceClassification.from_pretrained(path).classifier.weight for path in (first, second,
                                                                                                   third)]
    torch.testing.assert_close(heads[0], heads[1])
    assert not torch.allclose(heads[0], heads[2])
    assert read_init_info(first)["max_length"] == 512


def test_reinitialising_replaces_the_directory_atomically(tmp_path):
    path = init_cross_encoder("minilm", tmp_path / "model", num_layers=1)
    (path / "stale.txt").write_text("left over")
    init_cross_encoder("minilm", path, num_layers=2)
    assert not (path / "stale.txt").exists()
    assert read_init_info(path)["num_layers"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_layers must lie in"):
        init_cross_encoder("minilm", tmp_path / "m", num_layers=7)
    with pytest.raises(ValueError, match="num_layers must lie in"):
        init_cross_encoder("minilm", tmp_path / "m", num_layers=0)
    with pytest.raises(ValueError, match="max_length must lie in"):
        init_cross_encoder("minilm", tmp_path / "m", num_layers=1, max_length=1024)
    with pytest.raises(OSError, match="Could not load"):
        init_cross_encoder(tmp_path / "missing", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def _cls_spread(model_dir, pairs):
    """The spread of [CLS]'s last-layer output across pairs, relative to its norm."""
    model = AutoModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True, max_length=128,
                       return_tensors="pt")
    with torch.no_grad():
        cls = model(**inputs).last_hidden_state[:, 0]
    return float(cls.std(dim=0).norm() / cls.norm(dim=1).mean())


def test_contextual_cls_makes_the_first_position_depend_on_the_input(two_layers, nfcorpus_pairs, tmp_path):
    contextual = init_cross_encoder("minilm", tmp_path / "contextual", num_layers=2, max_length=256,
                                    contextual_cls=True)
    pairs = list(zip(nfcorpus_pairs["query"], nfcorpus_pairs["text"]))[:30]
    sink, spread = _cls_spread(two_layers, pairs), _cls_spread(contextual, pairs)
    assert sink < 0.02  # all-MiniLM-L6-v2's first position hardly sees the input
    assert spread > 10 * sink
    saved = AutoModel.from_pretrained(contextual).state_dict()
    positions = saved["embeddings.position_embeddings.weight"]
    torch.testing.assert_close(positions[0], positions[1:].mean(dim=0))
    source = AutoModel.from_pretrained(minilm_path()).state_dict()
    torch.testing.assert_close(positions[1:], source["embeddings.position_embeddings.weight"][1:])
    assert read_init_info(contextual)["contextual_cls"] is True
    assert read_init_info(two_layers)["contextual_cls"] is False
