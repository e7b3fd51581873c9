import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_shallow import TextLoader, datasets
from pyterrier_shallow.bm25 import bm25
from pyterrier_shallow.dense import BiEncoder
from pyterrier_shallow.train import score_with_teacher
from pyterrier_shallow.train.teacher import HybridTeacher, per_query_zscores

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def vaswani(shared_data):
    return datasets.vaswani(shared_data)


@pytest.fixture(scope="module")
def candidates(vaswani, tmp_path_factory):
    """BM25's top 10 for 8 real Vaswani queries, with text."""
    retriever = bm25(vaswani, tmp_path_factory.mktemp("bm25") / "vaswani", num_results=10)
    return (retriever >> TextLoader(vaswani)).transform(vaswani.get_topics().head(8))


@pytest.fixture(scope="module")
def teacher():
    return HybridTeacher(BiEncoder(query_length=32, doc_length=96, warn_truncation=False), dense_weight=2.0)


def test_zscores_are_per_query_and_zero_when_constant():
    frame = pd.DataFrame({"qid": ["1", "1", "1", "2", "2"], "x": [1.0, 2.0, 3.0, 5.0, 5.0]})
    z = per_query_zscores(frame, "x")
    np.testing.assert_allclose(z[:3], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    np.testing.assert_array_equal(z[3:], [0.0, 0.0])


def test_hybrid_is_bm25_z_plus_weighted_cosine_z(candidates, teacher):
    out = teacher.transform(candidates)
    assert out["score"].dtype == np.float32
    assert set(candidates.columns) <= set(out.columns)
    np.testing.assert_allclose(out["first_stage_score"].to_numpy(), candidates["score"].to_numpy())
    cosine = BiEncoder(query_length=32, doc_length=96, warn_truncation=False).text_scorer().transform(candidates)
    cosine = cosine.set_index(["qid", "docno"]).loc[list(zip(out["qid"], out["docno"], strict=True)), "score"]
    expected = per_query_zscores(out, "first_stage_score") + 2.0 * per_query_zscores(
        out.assign(cos=cosine.to_numpy(dtype=np.float64)), "cos")
    np.testing.assert_allclose(out["score"].to_numpy(), expected, rtol=1e-4, atol=1e-4)
    for _, group in out.groupby("qid"):
        assert group.sort_values("rank")["score"].is_monotonic_decreasing
    zero = HybridTeacher(teacher.dense, dense_weight=0.0).transform(candidates)
    np.testing.assert_allclose(zero["score"].to_numpy(), per_query_zscores(zero, "first_stage_score"), atol=1e-5)


def test_hybrid_reranks_better_than_bm25_on_vaswani(vaswani, candidates, teacher):
    qrels = vaswani.get_qrels()
    first = pt.Experiment([pt.Transformer.from_df(candidates)], candidates[["qid", "query"]].drop_duplicates(),
                          qrels, [pt.measures.nDCG @ 10])
    hybrid = pt.Experiment([pt.Transformer.from_df(teacher.transform(candidates))],
                           candidates[["qid", "query"]].drop_duplicates(), qrels, [pt.measures.nDCG @ 10])
    assert hybrid["nDCG@10"].iloc[0] > first["nDCG@10"].iloc[0]


def test_scores_for_distillation_and_caches(candidates, teacher, tmp_path):
    scored = score_with_teacher(teacher, candidates, cache_dir=tmp_path)
    again = score_with_teacher(teacher, candidates, cache_dir=tmp_path)
    np.testing.assert_array_equal(scored["teacher_score"].to_numpy(), again["teacher_score"].to_numpy())
    assert len(list(tmp_path.iterdir())) == 1
    assert "0x" not in repr(teacher) and "doc_length=96" in repr(teacher)  # lengths key the cache


def test_empty_frame_and_bad_input(candidates, teacher):
    empty = teacher.transform(candidates.head(0))
    assert len(empty) == 0 and "score" in empty.columns and set(candidates.columns) <= set(empty.columns)
    with pytest.raises(pt.validate.InputValidationError, match="score"):
        teacher.transform(candidates.drop(columns=["score"]))
    with pytest.raises(ValueError, match="missing or non-numeric"):
        teacher.transform(candidates.assign(score=np.nan))
    with pytest.raises((TypeError, ValueError), match="qid"):
        teacher.transform(candidates.assign(qid=candidates["qid"].astype(int)))
    with pytest.raises(ValueError, match="dense_weight"):
        HybridTeacher(teacher.dense, dense_weight=-1.0)


def test_train_command_distils_the_hybrid_teacher(shared_data, tmp_path):
    import json

    from pyterrier_shallow.train.cli_args import main_train

    out = tmp_path / "student"
    argv = ["--out", str(out), "--distill", "cranfield", "--teacher", "hybrid", "--teacher-weight", "1.5",
            "--distill-depth", "3", "--loss", "margin-mse", "--negatives", "2", "--queries-per-step", "1",
            "--steps", "2", "--warmup", "1", "--eval-every", "2", "--micro-batch", "8", "--query-length", "16",
            "--doc-length", "32", "--layers", "1", "--data-root", str(shared_data), "--index-dir",
            str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    with pytest.warns(UserWarning, match="empty 'text'"):  # Cranfield has two empty abstracts
        assert main_train(argv) == 0
    card = json.loads((out / "training_card.json").read_text())
    assert "--teacher hybrid --teacher-weight 1.5" in card["command"]
    assert card["data"]["name"] == "distil:cranfield"
    assert card["loss"]["name"] == "margin-mse"


def test_train_command_distils_on_pseudo_queries(shared_data, tmp_path):
    import json

    from pyterrier_shallow.train.cli_args import main_train

    out = tmp_path / "student"
    argv = ["--out", str(out), "--distill", "pseudo-title:cranfield", "--max-pseudo-queries", "6",
            "--teacher", "hybrid", "--distill-depth", "4", "--loss", "soft-label", "--negatives", "2",
            "--queries-per-step", "1", "--steps", "1", "--warmup", "1", "--eval-every", "1", "--micro-batch", "8",
            "--query-length", "16", "--doc-length", "32", "--layers", "1", "--data-root", str(shared_data),
            "--index-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    assert main_train(argv) == 0
    card = json.loads((out / "training_card.json").read_text())
    assert card["data"]["name"] == "distil:pseudo-title:cranfield"
    assert card["data"]["queries"] == 6
    assert card["data"]["candidates"] == 6 * 4


def test_distillation_rejects_labelled_pairs(shared_data, tmp_path):
    from pyterrier_shallow.train.cli_args import main_train

    argv = ["--out", str(tmp_path / "student"), "--distill", "wikiqa:train", "--teacher", "hybrid",
            "--data-root", str(shared_data), "--index-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet"]
    with pytest.raises(ValueError, match="--distill takes topics or pseudo-queries"):
        main_train(argv)
