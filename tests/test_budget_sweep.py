import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from _budget_helpers import vaswani_stage

import pyterrier_shallow as pts
from pyterrier_shallow.budget import FIRST_STAGE, Cascade, SweepResult, depth_grid, plot_tradeoff, sweep
from pyterrier_shallow.cli import main

DEPTHS = [1, 3, 12]
NDCG10 = pt.measures.nDCG @ 10


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    return vaswani_stage(tmp_path_factory.mktemp("bm25"), num_results=12)


@pytest.fixture(scope="module")
def result(stage, shallow_checkpoint):
    dataset, retriever, text = stage
    ce = pts.CrossEncoder(shallow_checkpoint)
    topics = dataset.get_topics().head(5)
    return sweep(
        retriever,
        {"2 layers": ce},
        topics,
        dataset.get_qrels(),
        text_loader=text,
        depths=DEPTHS,
        latency_queries=2,
        warmup=1,
    )


def test_depth_grid_is_geometric():
    assert depth_grid(1000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert depth_grid(30) == [1, 2, 5, 10, 20, 30]
    assert depth_grid(1) == [1]
    with pytest.raises(ValueError, match="max_depth"):
        depth_grid(0)


def test_sweep_table(result):
    table = result.table
    assert table[["model", "depth"]].values.tolist() == [[FIRST_STAGE, 0]] + [["2 layers", k] for k in DEPTHS]
    assert result.measure == "nDCG@10" and result.effectiveness_queries == 5 and result.latency_queries == 2
    assert table[["mean_ms", "p50_ms", "p95_ms"]].gt(0).all().all()
    assert table.loc[table["model"] == FIRST_STAGE, "rerank_ms"].iloc[0] < 0.1  # no reranking at depth 0
    assert "sample of 2 queries" in result.describe()


def test_sweep_effectiveness_matches_the_pipeline_at_each_depth(stage, shallow_checkpoint, result):
    dataset, retriever, text = stage
    topics = dataset.get_topics().head(5)
    qrels = dataset.get_qrels()
    qrels = qrels[qrels["qid"].isin(topics["qid"])]
    ce = pts.CrossEncoder(shallow_checkpoint)
    table = result.table.set_index(["model", "depth"])["nDCG@10"]
    first = pt.Evaluate(retriever(topics), qrels, metrics=[NDCG10])["nDCG@10"]
    assert table[FIRST_STAGE, 0] == pytest.approx(first)
    deepest = pt.Evaluate((retriever >> text >> ce)(topics), qrels, metrics=[NDCG10])["nDCG@10"]
    assert table["2 layers", 12] == pytest.approx(deepest, abs=1e-6)


def test_best_under_a_budget():
    table = pd.DataFrame(
        {
            "model": [FIRST_STAGE, "a", "a", "b", "b"],
            "depth": [0, 10, 100, 10, 100],
            "nDCG@10": [0.30, 0.35, 0.40, 0.38, 0.45],
            "mean_ms": [2.0, 10.0, 60.0, 30.0, 300.0],
        }
    )
    result = SweepResult(table=table, measure="nDCG@10", effectiveness_queries=10, latency_queries=5)
    budgets = result.budget_table([1, 5, 40, 100, 1000])
    assert budgets["model"].isna().tolist() == [True, False, False, False, False]
    assert budgets["model"].tolist()[1:] == [FIRST_STAGE, "b", "a", "b"]
    assert budgets["depth"].tolist()[1:] == [0, 10, 100, 100]
    assert np.isnan(budgets["nDCG@10"].iloc[0])
    assert result.best_under(1) is None


def test_plot_is_written_atomically(result, tmp_path):
    path = plot_tradeoff(result, tmp_path / "plots" / "sweep.png", budgets_ms=[50])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [child.name for child in path.parent.iterdir()] == ["sweep.png"]


def test_bad_input_gets_a_clear_error(stage, shallow_checkpoint):
    dataset, retriever, text = stage
    topics, qrels = dataset.get_topics().head(2), dataset.get_qrels()
    ce = {"ce": pts.CrossEncoder(shallow_checkpoint)}
    with pytest.raises(ValueError, match="depths"):
        sweep(retriever, ce, topics, qrels, text_loader=text, depths=[0, 5])
    with pytest.raises(ValueError, match="at least one reranker"):
        sweep(retriever, {}, topics, qrels, text_loader=text)
    with pytest.raises(ValueError, match="empty"):
        sweep(retriever, ce, topics.head(0), qrels, text_loader=text)
    with pytest.raises(ValueError, match="no qrels"):
        sweep(retriever, ce, topics, qrels.head(0), text_loader=text)
    with pytest.raises(KeyError, match="label"):
        sweep(retriever, ce, topics, qrels.drop(columns=["label"]), text_loader=text)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_sweep_command(shallow_checkpoint, tmp_path, capsys, precision):
    out = tmp_path / "out"
    status = main(
        [
            "sweep",
            f"two={shallow_checkpoint}",
            "--queries",
            "3",
            "--depths",
            "2,5",
            "--latency-queries",
            "1",
            "--budgets",
            "5,5000",
            "--index-dir",
            str(tmp_path / "index"),
            "--out",
            str(out),
            "--quiet",
            "--threads",
            "1",
            "--precision",
            precision,
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "sample of 1 queries" in printed and "two" in printed
    table = pd.read_csv(out / "sweep.csv")
    assert table["depth"].tolist() == [0, 2, 5]
    assert (out / "sweep.png").is_file() and len(pd.read_csv(out / "budgets.csv")) == 2


def test_sweep_command_errors(shallow_checkpoint, tmp_path, capsys):
    assert main(["sweep", str(shallow_checkpoint), "--depths", "a,b"]) == 2
    assert "--depths" in capsys.readouterr().err
    assert main(["sweep", f"x={shallow_checkpoint}", f"x={shallow_checkpoint}"]) == 2


def test_sweep_command_takes_bi_encoder_scorers_cut_to_their_first_layers(tmp_path, capsys):
    out = tmp_path / "out"
    work_folders = set(Path(tempfile.gettempdir()).glob("pyterrier-shallow-sweep-*"))
    argv = ["sweep", "two=bi-encoder:@2", "six=bi-encoder:", "--queries", "2", "--depths", "1,3"]
    argv += ["--latency-queries", "1", "--index-dir", str(tmp_path / "index"), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    table = pd.read_csv(out / "sweep.csv")
    assert set(table["model"]) == {"first stage", "two", "six"}
    assert table["nDCG@10"].notna().all()
    assert set(Path(tempfile.gettempdir()).glob("pyterrier-shallow-sweep-*")) <= work_folders  # the cut is removed


def test_sweep_command_rejects_bad_bi_encoder_specs(tmp_path, capsys):
    common = ["--queries", "1", "--depths", "1", "--index-dir", str(tmp_path / "index"), "--quiet"]
    assert main(["sweep", "bi-encoder:@two", *common]) == 2
    assert "layer count" in capsys.readouterr().err
    assert main(["sweep", "bi-encoder:", "--precision", "int8", *common]) == 2
    assert "cross-encoders only" in capsys.readouterr().err


def test_sweep_command_takes_stored_vector_scorers_and_poly_encoders(tmp_path, capsys):
    from pyterrier_shallow.bm25 import bm25
    from pyterrier_shallow.datasets import vaswani

    collection = vaswani()
    candidates = bm25(collection, tmp_path / "index", num_results=3, verbose=False)(collection.get_topics().head(2))
    texts = dict(zip(candidates["docno"], pts.TextLoader(collection)(candidates)["text"], strict=True))
    docs = [{"docno": docno, "text": text} for docno, text in texts.items()]
    encoder = pts.BiEncoder(warn_truncation=False)
    pts.FaissIndex(tmp_path / "dense").indexer(encoder, verbose=False).index(docs)
    out = tmp_path / "out"
    argv = ["sweep", "dense=dense:", "poly=poly:", "hybrid=hybrid:", "--queries", "2", "--depths", "1,3",
            "--latency-queries", "1"]
    argv += ["--index-dir", str(tmp_path / "index"), "--dense-index", str(tmp_path / "dense"), "--out", str(out),
             "--quiet"]
    assert main(argv) == 0
    table = pd.read_csv(out / "sweep.csv")
    assert set(table["model"]) == {"first stage", "dense", "poly", "hybrid"}
    assert table["nDCG@10"].notna().all()
    assert main(["sweep", "dense:somewhere", "--queries", "1", "--depths", "1", "--index-dir",
                 str(tmp_path / "index"), "--dense-index", str(tmp_path / "dense"), "--quiet"]) == 2
    assert "takes no path" in capsys.readouterr().err


def test_sweep_command_takes_precomputed_cross_encoders(tmp_path):
    from pyterrier_shallow._hf import DEFAULT_CROSS_ENCODER_DIR
    from pyterrier_shallow.bm25 import bm25
    from pyterrier_shallow.datasets import vaswani
    from pyterrier_shallow.gated import load_delta, save_delta
    from pyterrier_shallow.precomputed.index import index_for_model

    model, tokenizer = load_delta(DEFAULT_CROSS_ENCODER_DIR)
    model.confine_cross_attention(1)
    folder = save_delta(model, tokenizer, tmp_path / "model")
    collection = vaswani()
    candidates = bm25(collection, tmp_path / "index", num_results=3, verbose=False)(collection.get_topics().head(2))
    texts = dict(zip(candidates["docno"], pts.TextLoader(collection)(candidates)["text"], strict=True))
    docs = [{"docno": docno, "text": text} for docno, text in texts.items()]
    index_for_model(folder, tmp_path / "states", lambda: docs)  # the sweep finds it by the model's fingerprint
    out = tmp_path / "out"
    argv = ["sweep", f"pre=pre:{folder}", "--queries", "2", "--depths", "1,3", "--latency-queries", "1",
            "--precision", "int8", "--index-dir", str(tmp_path / "index"), "--states-dir", str(tmp_path / "states"),
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    table = pd.read_csv(out / "sweep.csv")
    assert set(table["model"]) == {"first stage", "pre"}
    assert table["nDCG@10"].notna().all()
    assert len(list((tmp_path / "states").iterdir())) == 1  # no second index was built


def test_a_cascade_reranks_the_order_its_earlier_reranker_gives(stage, shallow_checkpoint):
    dataset, retriever, text = stage
    topics = dataset.get_topics().head(4)
    qrels = dataset.get_qrels()
    qrels = qrels[qrels["qid"].isin(topics["qid"])]
    before = pts.BiEncoder(warn_truncation=False).text_scorer()
    after = pts.CrossEncoder(shallow_checkpoint, anchor=pts.anchor.Anchor(1.0, 0.5))
    found = sweep(retriever, {"cascade": Cascade(before, after)}, topics, qrels, text_loader=text, depths=DEPTHS,
                  latency_queries=1, warmup=0)
    table = found.table.set_index(["model", "depth"])
    alone = pt.Evaluate((retriever >> text >> before)(topics), qrels, metrics=[NDCG10])["nDCG@10"]
    assert table.loc[("cascade", 1), "nDCG@10"] == pytest.approx(alone, abs=1e-6)  # one candidate keeps its place
    deepest = pt.Evaluate((retriever >> text >> before >> after)(topics), qrels, metrics=[NDCG10])["nDCG@10"]
    assert table.loc[("cascade", 12), "nDCG@10"] == pytest.approx(deepest, abs=1e-6)
    assert (table.loc["cascade", "mean_ms"] > table.loc["cascade", "rerank_ms"]).all()  # the earlier stage counts


def test_a_cascade_whose_earlier_reranker_drops_candidates_is_refused(stage, shallow_checkpoint):
    dataset, retriever, text = stage
    topics = dataset.get_topics().head(2)
    cascade = Cascade(pt.RankCutoff(5), pts.CrossEncoder(shallow_checkpoint))
    with pytest.raises(ValueError, match="must rerank them all"):
        sweep(retriever, {"cut": cascade}, topics, dataset.get_qrels(), text_loader=text, depths=DEPTHS)


def test_sweep_command_takes_the_poly_encoder_then_precomputed_cascade(tmp_path, capsys):
    from pyterrier_shallow.bm25 import bm25
    from pyterrier_shallow.datasets import vaswani
    from pyterrier_shallow.precomputed import PRECOMPUTED_MODEL_DIR
    from pyterrier_shallow.precomputed.index import index_for_model

    collection = vaswani()
    candidates = bm25(collection, tmp_path / "index", num_results=3, verbose=False)(collection.get_topics().head(2))
    texts = dict(zip(candidates["docno"], pts.TextLoader(collection)(candidates)["text"], strict=True))
    docs = [{"docno": docno, "text": text} for docno, text in texts.items()]
    pts.FaissIndex(tmp_path / "dense").indexer(pts.BiEncoder(warn_truncation=False), verbose=False).index(docs)
    index_for_model(PRECOMPUTED_MODEL_DIR, tmp_path / "states", lambda: docs)
    common = ["--queries", "2", "--latency-queries", "1", "--index-dir", str(tmp_path / "index"), "--dense-index",
              str(tmp_path / "dense"), "--states-dir", str(tmp_path / "states"), "--quiet"]
    assert main(["sweep", "poly=poly:", "both=cascade:", "--depths", "1,3", "--out", str(tmp_path / "out"),
                 *common]) == 0
    table = pd.read_csv(tmp_path / "out" / "sweep.csv").set_index(["model", "depth"])
    assert table.loc[("both", 1), "nDCG@10"] == pytest.approx(table.loc[("poly", 3), "nDCG@10"])
    assert table["nDCG@10"].notna().all()
    assert main(["sweep", "cascade:somewhere", "--depths", "1", *common]) == 2
    assert "takes no path" in capsys.readouterr().err
