"""Pipelines scale out: the headline pipeline pickles, and ``.parallel(2)`` ranks as the serial run does."""

import pickle

import pandas as pd
import pytest

import pyterrier_shallow as pts
from pyterrier_shallow import datasets
from pyterrier_shallow.bm25 import bm25

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vaswani():
    return datasets.vaswani()


@pytest.fixture(scope="module")
def pipeline(vaswani, tmp_path_factory, shallow_checkpoint):
    """BM25's top 10 with their text, reranked by a real (2-layer) cross-encoder: every stage is the project's."""
    first_stage = bm25(vaswani, tmp_path_factory.mktemp("bm25") / "vaswani")
    reranker = pts.CrossEncoder(shallow_checkpoint, batch_size=16, doc_length=96, warn_truncation=False)
    return first_stage % 10 >> pts.TextLoader(vaswani) >> reranker


@pytest.fixture(scope="module")
def topics(vaswani):
    return vaswani.get_topics().head(6)


@pytest.fixture(scope="module")
def serial(pipeline, topics):
    return pipeline(topics)


def _ranked(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["qid", "rank"])[["qid", "docno", "rank", "score"]].reset_index(drop=True)


def test_the_pipeline_pickles_and_its_copy_ranks_the_same(pipeline, topics, serial):
    copy = pickle.loads(pickle.dumps(pipeline))
    pd.testing.assert_frame_equal(_ranked(copy(topics)), _ranked(serial), atol=1e-5, rtol=0)


def test_joblib_parallel_equals_the_serial_run(pipeline, topics, serial):
    with pytest.warns(UserWarning, match="experimental"):  # PyTerrier's own notice
        parallel = pipeline.parallel(2)
    pd.testing.assert_frame_equal(_ranked(parallel(topics)), _ranked(serial), atol=1e-5, rtol=0)


def test_ray_parallel_equals_the_serial_run(pipeline, topics, serial):
    ray = pytest.importorskip("ray", reason="ray is an optional extra: pip install 'pyterrier-shallow[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with pytest.warns(UserWarning, match="experimental"):
            parallel = pipeline.parallel(2, backend="ray")
        assert len(ray.nodes()) == 1
        pd.testing.assert_frame_equal(_ranked(parallel(topics)), _ranked(serial), atol=1e-5, rtol=0)
    finally:
        ray.shutdown()


def test_the_serial_run_is_a_real_reranking(serial, topics):
    assert set(serial["qid"]) == set(topics["qid"])
    assert serial.groupby("qid").size().eq(10).all()
    assert serial["score"].dtype == "float32"
