import warnings

import pytest

from pyterrier_shallow.cli import main


def test_demo_runs_offline_on_the_bundled_collection(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PYTERRIER_SHALLOW_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no shared/data above: the bundled Vaswani must be enough
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(["demo", "--index-dir", str(tmp_path / "index"), "--depth", "10", "--quiet"])
    assert [str(warning.message) for warning in caught] == []  # quiet by default: no stray warnings
    out = capsys.readouterr().out
    assert status == 0
    bm25_row = next(line for line in out.splitlines() if line.strip().startswith("BM25 "))
    assert "0.4667" in bm25_row  # nDCG@10 of BM25 on Vaswani, the reference figure
    assert "BM25 >> hybrid z(BM25) + 3 z(MiniLM cosine) (top 10)" in out
    assert "BM25 >> CrossEncoder (top 10)" in out


def test_the_demo_default_depth_is_the_documented_one():
    from pyterrier_shallow.cli import build_parser
    from pyterrier_shallow.demo import DEMO_DEPTH

    assert build_parser().parse_args(["demo"]).depth == DEMO_DEPTH


def test_demo_reranks_with_a_given_cross_encoder(tmp_path, capsys, shallow_checkpoint):
    status = main(
        [
            "demo",
            "--index-dir",
            str(tmp_path / "index"),
            "--model",
            str(shallow_checkpoint),
            "--depth",
            "10",
            "--max-queries",
            "3",
            "--quiet",
        ]
    )
    assert status == 0
    assert "BM25 >> CrossEncoder (top 10)" in capsys.readouterr().out


def test_unknown_dataset_is_a_clear_error(capsys):
    assert main(["demo", "--dataset", "no-such-collection", "--quiet"]) == 2
    assert "no-such-collection" in capsys.readouterr().err


def test_subcommand_is_required(capsys):
    with pytest.raises(SystemExit):
        main([])
