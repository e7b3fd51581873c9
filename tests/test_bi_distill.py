"""Distilling a shallow bi-encoder from a deep one: the student moves toward the teacher's embeddings."""

import json

import numpy as np
import pytest

import pyterrier_shallow as pts
from pyterrier_shallow import datasets
from pyterrier_shallow.train.bi_distill import BiDistillConfig, distill_bi_encoder, distillation_texts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_student_moves_toward_the_teacher_and_loads_as_a_bi_encoder(tmp_path):
    texts = [doc["text"] for doc in datasets.vaswani().get_corpus_iter()][:300]
    config = BiDistillConfig(num_layers=1, epochs=2, batch_size=16, lr=5e-4, max_length=48, val_share=0.2)
    card = distill_bi_encoder(tmp_path / "student", texts, config=config, cache_dir=tmp_path / "cache",
                              verbose=False)
    assert card["curve"][-1]["val_cosine"] > card["val_cosine_before"] + 0.05
    assert [point["epoch"] for point in card["curve"]] == [1, 2]
    assert json.loads((tmp_path / "student" / "distillation_card.json").read_text())["texts"] == 300
    assert list((tmp_path / "cache").glob("teacher-*.npy"))  # the teacher's embeddings are computed once
    vectors = pts.BiEncoder(tmp_path / "student", warn_truncation=False).encode_docs(texts[:4])
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    again = distill_bi_encoder(tmp_path / "more", texts, config=BiDistillConfig(**{**config.__dict__, "epochs": 1}),
                               cache_dir=tmp_path / "cache", student=tmp_path / "student", verbose=False)
    assert again["val_cosine_before"] == pytest.approx(card["curve"][-1]["val_cosine"], abs=1e-5)


def test_held_out_collections_are_refused(shared_data):
    with pytest.raises(ValueError, match="vaswani is held out"):
        distillation_texts(["cranfield", "vaswani"], root=shared_data)
    texts = distillation_texts(["cisi"], root=shared_data)
    assert len(texts) == len(set(texts)) > 1460
