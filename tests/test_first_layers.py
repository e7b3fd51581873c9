import numpy as np
import pytest
import torch

from pyterrier_shallow._hf import minilm_path
from pyterrier_shallow.dense import BiEncoder, save_first_layers


@pytest.fixture(scope="module")
def two_layers(tmp_path_factory):
    return save_first_layers(tmp_path_factory.mktemp("cut") / "minilm-l2", 2)


def test_vectors_are_the_whole_models_second_layer_mean_pooled(two_layers, nfcorpus_pairs):
    from transformers import AutoModel, AutoTokenizer

    texts = nfcorpus_pairs["text"].unique()[:6].tolist()
    ours = BiEncoder(two_layers, warn_truncation=False).encode_docs(texts)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    whole = AutoModel.from_pretrained(minilm_path()).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = whole(**batch, output_hidden_states=True).hidden_states[2]
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_the_cut_keeps_the_layout_and_drops_later_layers(two_layers):
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(two_layers).num_hidden_layers == 2
    assert (two_layers / "modules.json").is_file() and (two_layers / "tokenizer.json").is_file()
    assert (two_layers / "model.safetensors").stat().st_size < (minilm_path() / "model.safetensors").stat().st_size
    assert not list(two_layers.parent.glob(".*.tmp"))  # written through a temporary folder


@pytest.mark.parametrize("layers", [0, 7])
def test_out_of_range_layer_counts_are_rejected(tmp_path, layers):
    with pytest.raises(ValueError, match="between 1 and the model's 6 layers"):
        save_first_layers(tmp_path / "cut", layers)
    assert not (tmp_path / "cut").exists()


def test_a_source_that_is_not_a_local_checkpoint_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="local checkpoint folder"):
        save_first_layers(tmp_path / "cut", 2, source=tmp_path / "nowhere")


def test_cutting_layers_prints_no_load_report(tmp_path, capfd):
    from pyterrier_shallow.dense import save_first_layers

    capfd.readouterr()
    save_first_layers(tmp_path / "two", 2)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
