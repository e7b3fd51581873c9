import json
import re
from pathlib import Path

import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_shallow import datasets
from pyterrier_shallow.datasets import ENV_VAR, LocalDataset, safe_query

FIXTURE = Path(__file__).parent / "fixtures" / "beir_nfcorpus"
SAFE = re.compile(r"^[^\W_]+( [^\W_]+)*$")

# name, split, documents, topics, qrels rows, judged topics (counted on the files themselves)
COUNTS = [
    ("vaswani", "all", 11_429, 93, 2_083, 93),
    ("nfcorpus", "test", 3_162, 323, 12_334, 323),
    ("nfcorpus", "dev", 3_193, 325, 11_385, 324),
    ("cranfield", "all", 1_400, 225, 1_837, 225),
    ("cisi", "all", 1_460, 112, 3_114, 76),
    ("wikiqa", "test", 5_961, 633, 6_165, 633),
    ("wikiqa", "train", 20_360, 2_118, 20_360, 2_118),
    ("trec-dl", "dl19", None, 43, 9_260, 43),
    ("trec-dl", "dl20", None, 200, 11_386, 54),
    ("trec-dl", "dl20-judged", None, 54, 11_386, 54),
    ("trec-dl", "dev-small", None, 6_980, 7_437, 6_980),
]


@pytest.fixture(scope="module")
def loaded(shared_data):
    cache = {}

    def load(name):
        if name not in cache:
            cache[name] = datasets.get(name, shared_data)
        return cache[name]

    return load


def assert_str_column(frame, column):
    assert pd.api.types.is_string_dtype(frame[column]), (column, frame[column].dtype)
    assert frame[column].map(type).eq(str).all(), column


@pytest.mark.parametrize(("name", "split", "n_docs", "n_topics", "n_qrels", "n_judged"), COUNTS)
def test_counts_and_shapes(loaded, name, split, n_docs, n_topics, n_qrels, n_judged):
    dataset = loaded(name)
    topics, qrels = dataset.get_topicsqrels(split)
    assert len(topics) == n_topics
    assert len(qrels) == n_qrels
    assert qrels["qid"].nunique() == n_judged
    assert list(topics.columns) in (["qid", "query"], ["qid", "query", "query_0"])
    assert list(qrels.columns) == ["qid", "docno", "label"]
    for column in topics.columns:
        assert_str_column(topics, column)
    assert_str_column(qrels, "qid")
    assert_str_column(qrels, "docno")
    assert qrels["label"].dtype == "int64"
    assert topics["qid"].is_unique
    assert set(qrels["qid"]) <= set(topics["qid"]) or split == "dl20-judged"
    assert topics["query"].map(lambda text: bool(SAFE.match(text))).all()
    if n_docs is None:
        with pytest.raises(NotImplementedError, match="MS MARCO"):
            dataset.get_corpus_iter(split=split)
        return
    corpus = dataset.get_corpus_frame(split)
    assert len(corpus) == n_docs
    assert corpus["docno"].is_unique
    assert_str_column(corpus, "docno")
    assert corpus["text"].map(type).eq(str).all()
    assert set(qrels["docno"]) <= set(corpus["docno"])


def test_judged_dl20_topics_are_the_judged_ones(loaded):
    dataset = loaded("trec-dl")
    judged = dataset.get_topics("dl20-judged")
    assert set(judged["qid"]) == set(dataset.get_qrels("dl20")["qid"])
    assert set(judged["qid"]) < set(dataset.get_topics("dl20")["qid"])


def test_default_split_is_the_first(loaded):
    dataset = loaded("nfcorpus")
    assert dataset.splits == ("test", "dev")
    pd.testing.assert_frame_equal(dataset.get_topics(), dataset.get_topics("test"))
    first = next(iter(dataset.get_corpus_iter()))
    assert first == next(iter(dataset.get_corpus_iter(split="test")))
    assert set(first) == {"docno", "text"}


def test_nfcorpus_splits_have_their_own_corpora(loaded):
    dataset = loaded("nfcorpus")
    test_docs = set(dataset.get_corpus_frame("test")["docno"])
    dev_docs = set(dataset.get_corpus_frame("dev")["docno"])
    assert test_docs != dev_docs and test_docs & dev_docs
    assert set(dataset.get_qrels("dev")["docno"]) <= dev_docs
    assert not set(dataset.get_qrels("dev")["docno"]) <= test_docs


def test_nfcorpus_queries_with_punctuation_are_made_safe(loaded, shared_data):
    topics = loaded("nfcorpus").get_topics("test")
    raw = dict(line.rstrip("\n").split("\t") for line in open(shared_data / "nfcorpus" / "queries.beir-test.tsv"))
    assert dict(zip(topics["qid"], topics["query_0"], strict=True)) == raw
    by_qid = topics.set_index("qid")
    assert by_qid.loc["PLAIN-33", "query_0"] == "What’s Driving America’s Obesity Problem?"
    assert by_qid.loc["PLAIN-33", "query"] == "What s Driving America s Obesity Problem"
    assert by_qid.loc["PLAIN-2", "query"] == "Do Cholesterol Statin Drugs Cause Breast Cancer"
    awkward = topics[topics["query_0"].str.contains(r"[?:'\"’“”/()]")]
    assert len(awkward) == 57
    assert not awkward["query"].str.contains(r"[?:'\"’“”/()]").any()


def test_dev_titles_are_read_as_released(loaded):
    topics = loaded("nfcorpus").get_topics("dev").set_index("qid")
    assert topics.loc["PLAIN-1097", "query"] == "eggbeaters"


def test_safe_query():
    assert safe_query("Vitamin D: Shedding some light?") == "Vitamin D Shedding some light"
    assert safe_query("  fresh fruit versus frozen--which is better  ") == "fresh fruit versus frozen which is better"
    assert safe_query("a\x00b\tc\nd\u2028e") == "a b c d e"
    assert safe_query("café Ω 3.5mg snake_case") == "café Ω 3 5mg snake case"
    assert safe_query("ﬁbre") == "fibre"
    assert safe_query('{"?"}') == ""


def test_vaswani_is_bundled_and_matches_the_shared_copy(shared_data, monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    bundled = datasets.vaswani()
    assert "pyterrier_shallow" in str(bundled.path)
    size = sum(file.stat().st_size for file in bundled.path.iterdir())
    assert size < 1.5e6
    assert (bundled.path / "README.md").read_text().count("Mozilla Public") == 1
    shared = datasets.vaswani(shared_data)
    pd.testing.assert_frame_equal(bundled.get_topics(), shared.get_topics())
    pd.testing.assert_frame_equal(bundled.get_qrels(), shared.get_qrels())
    pd.testing.assert_frame_equal(bundled.get_corpus_frame(), shared.get_corpus_frame())


def test_vaswani_text(loaded):
    dataset = loaded("vaswani")
    first = next(iter(dataset.get_corpus_iter()))
    assert first["docno"] == "1"
    assert first["text"].startswith("compact memories have flexible capacities a digital data storage system")
    topics = dataset.get_topics().set_index("qid")
    assert topics.loc["81", "query_0"].endswith("IDEAS. A SUITABLE ARTICLE PLEASE")
    assert topics.loc["1", "query"] == topics.loc["1", "query_0"]


def test_cranfield_qids_follow_file_order_and_labels_grow_with_relevance(loaded, shared_data):
    dataset = loaded("cranfield")
    topics = dataset.get_topics().set_index("qid")
    assert list(topics.index[:3]) == ["1", "2", "3"]
    assert topics.loc["3", "query"].startswith("what problems of heat conduction in composite slabs")  # .I 004
    assert topics.loc["225", "query_0"] == _last_smart_query(shared_data / "cranfield" / "cran.qry")
    qrels = dataset.get_qrels().set_index(["qid", "docno"])["label"]
    raw = [line.split() for line in open(shared_data / "cranfield" / "cranqrel") if line.strip()]
    expected = {(qid, docno): (0 if grade == "-1" else 5 - int(grade)) for qid, docno, grade in raw}
    assert qrels.to_dict() == expected
    assert qrels[("1", "184")] == 3 and qrels[("1", "12")] == 2 and qrels[("1", "486")] == 0
    doc = dataset.get_corpus_frame().set_index("docno").loc["486"]
    assert doc["title"] == "similarity laws for aerothermoelastic testing ."


def _last_smart_query(path):
    text = Path(path).read_text()
    return " ".join(text.rsplit(".W", 1)[1].split())


def test_cisi_fields(loaded):
    dataset = loaded("cisi")
    doc = next(iter(dataset.get_corpus_iter()))
    assert doc["docno"] == "1"
    assert doc["title"] == "18 Editions of the Dewey Decimal Classifications"
    assert doc["text"].startswith("The present study is a history of the DEWEY Decimal Classification.")
    assert "Comaromi" not in doc["text"]
    assert set(dataset.get_qrels()["label"]) == {1}


def test_wikiqa_candidates(loaded):
    dataset = loaded("wikiqa")
    for split in dataset.splits:
        results = dataset.get_results(split)
        qrels = dataset.get_qrels(split)
        assert list(results.columns) == ["qid", "query", "query_0", "docno", "text"]
        assert not results.duplicated(["qid", "docno"]).any()
        merged = results.merge(qrels, on=["qid", "docno"], how="outer", indicator=True)
        assert merged["_merge"].eq("both").all()
        assert results["qid"].nunique() == len(dataset.get_topics(split))
    test_doc = next(iter(dataset.get_corpus_iter(split="test")))
    assert test_doc == {
        "docno": "D0-0",
        "text": "African immigration to the United States refers to immigrants to the United States who are or "
        "were nationals of Africa .",
        "title": "African immigration to the United States",
    }
    assert "title" not in next(iter(dataset.get_corpus_iter(split="train")))


def test_wikiqa_train_quirks(loaded):
    dataset = loaded("wikiqa")
    results = dataset.get_results("train")
    topics = dataset.get_topics("train")
    assert topics["qid"].iloc[0] == "train-1" and topics["query_0"].iloc[0] == "how are glacier caves formed?"
    # a question read only from 7-field rows
    leeroy = results[results["query_0"] == "what does leeroy jenkins mean"]
    assert list(leeroy["docno"]) == ["D690-0", "D690-1", "D690-2", "D690-3"]
    labels = dataset.get_qrels("train").set_index("docno")["label"]
    assert labels["D690-1"] == 1
    # a 7-field row inside a question of 5-field rows
    barefoot = results[results["docno"] == "D562-8"].iloc[0]
    assert barefoot["query_0"] == "what does barefoot and pregnant mean"
    assert (results["qid"] == barefoot["qid"]).sum() == 9
    # CSV quoting undone
    texts = results.set_index("docno")["text"]
    assert texts["S5"].startswith("Glacier caves are often called ice caves")
    assert any('Tommy "The Machine" Gunn' in text for text in texts)
    assert texts.str.contains('""').sum() == 6  # the release's own empty quotes, e.g. 'is "" and the U.S.'s
    assert (topics["query_0"] == 'WHAT MOVIE HAD MICKEY GILLEY\'S SONG "I WAS BORN A DREAMER" IN IT?').sum() == 1


def test_get_by_name(shared_data):
    for name in ("vaswani", "nfcorpus", "cranfield", "cisi", "wikiqa", "trec-dl"):
        dataset = datasets.get(name, shared_data)
        assert isinstance(dataset, LocalDataset) and isinstance(dataset, pt.datasets.Dataset)
        assert dataset.name == name
        assert name in repr(dataset) and str(dataset.splits) in repr(dataset)
    assert datasets.get("TREC_DL", shared_data).name == "trec-dl"
    assert datasets.get(f"beir:{FIXTURE}").splits == ("test", "dev")
    with pytest.raises(ValueError, match="unknown collection 'msmarco'.*nfcorpus"):
        datasets.get("msmarco", shared_data)
    with pytest.raises(ValueError, match="needs a folder"):
        datasets.get("beir:")


def test_root_may_be_the_collection_folder(shared_data):
    direct = datasets.cisi(shared_data / "cisi")
    pd.testing.assert_frame_equal(direct.get_topics(), datasets.cisi(shared_data).get_topics())


def test_root_from_environment_and_from_parent_folders(shared_data, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(shared_data))
    assert datasets.data_root() == shared_data
    assert len(datasets.cisi().get_topics()) == 112
    monkeypatch.delenv(ENV_VAR)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data, target_is_directory=True)
    (tmp_path / "repo" / "notebooks").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "notebooks")
    assert datasets.data_root() == tmp_path / "shared" / "data"
    assert len(datasets.cranfield().get_topics()) == 225


def test_missing_root_errors(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist.*root="):
        datasets.nfcorpus(tmp_path / "does-not-exist")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=rf"nowhere.*\${ENV_VAR}"):
        datasets.cisi()
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no collection folder found") as error:
        datasets.wikiqa()
    assert str(tmp_path / "shared" / "data") in str(error.value)
    assert ENV_VAR in str(error.value)


def test_incomplete_collection_folder(tmp_path, shared_data):
    (tmp_path / "cisi").mkdir()
    (tmp_path / "cisi" / "CISI.ALL").symlink_to(shared_data / "cisi" / "CISI.ALL")
    with pytest.raises(FileNotFoundError, match=r"lacks the file\(s\) \['CISI.QRY', 'CISI.REL'\]"):
        datasets.cisi(tmp_path)
    with pytest.raises(FileNotFoundError, match="nfcorpus.*does not exist"):
        datasets.nfcorpus(tmp_path)


def test_bad_split_names(loaded):
    with pytest.raises(ValueError, match=r"nfcorpus has no split 'train'; its splits are \['test', 'dev'\]"):
        loaded("nfcorpus").get_topics("train")
    with pytest.raises(ValueError, match="no split"):
        loaded("vaswani").get_qrels("test")
    with pytest.raises(ValueError, match="no split"):
        loaded("wikiqa").get_corpus_iter(split="dev")
    with pytest.raises(NotImplementedError, match="no candidate result frame"):
        loaded("cisi").get_results()


def test_trec_dl_with_a_supplied_collection(shared_data, tmp_path):
    lines = (shared_data / "nfcorpus" / "test.docs").read_text().splitlines()[:5]
    (tmp_path / "collection.tsv").write_text("\n".join(lines) + "\n")
    dataset = datasets.trec_dl(shared_data, collection=tmp_path / "collection.tsv")
    docs = list(dataset.get_corpus_iter())
    assert [doc["docno"] for doc in docs] == [line.split("\t")[0] for line in lines]
    with pytest.raises(FileNotFoundError, match="collection file"):
        datasets.trec_dl(shared_data, collection=tmp_path / "missing.tsv")


def test_corpus_iter_progress_bar(loaded):
    assert sum(1 for _ in loaded("cisi").get_corpus_iter(verbose=True)) == 1_460


def test_frames_are_copies(loaded):
    dataset = loaded("cisi")
    topics = dataset.get_topics()
    topics.loc[0, "query"] = "changed"
    assert dataset.get_topics().loc[0, "query"] != "changed"


# --- BEIR layout ---


def test_beir_fixture():
    dataset = datasets.beir(FIXTURE)
    assert dataset.splits == ("test", "dev")
    topics, qrels = dataset.get_topicsqrels("test")
    assert list(topics["qid"]) == ["PLAIN-307", "PLAIN-332", "PLAIN-358", "PLAIN-371", "PLAIN-383", "PLAIN-418"]
    assert "PLAIN-2" not in set(topics["qid"])  # in queries.jsonl but not judged
    by_qid = topics.set_index("qid")
    assert by_qid.loc["PLAIN-307", "query_0"] == "Vitamin D: Shedding some light on the new recommendations"
    assert by_qid.loc["PLAIN-358", "query"] == "Didn t another study show carnitine was good for the heart"
    assert len(qrels) == 18 and qrels["label"].dtype == "int64" and set(qrels["label"]) <= {1, 2}
    assert list(dataset.get_topics("dev")["query"]) == ["eggbeaters", "formaldehyde"]
    corpus = dataset.get_corpus_frame()
    assert list(corpus.columns) == ["docno", "title", "text"] and len(corpus) == 37
    assert set(qrels["docno"]) | set(dataset.get_qrels("dev")["docno"]) <= set(corpus["docno"])


def test_beir_matches_the_original_files(shared_data):
    dataset = datasets.beir(FIXTURE)
    nfcorpus = datasets.nfcorpus(shared_data)
    original = nfcorpus.get_topics("test").set_index("qid")
    topics = dataset.get_topics("test").set_index("qid")
    pd.testing.assert_frame_equal(topics, original.loc[topics.index])
    texts = nfcorpus.get_corpus_frame("test").set_index("docno")["text"]
    test_docs = dataset.get_corpus_frame().set_index("docno")["text"]
    shared = test_docs.index.intersection(texts.index)
    assert len(shared) > 20
    assert (test_docs[shared] == texts[shared]).all()


def test_beir_roundtrip_with_titles(loaded, tmp_path):
    cranfield = loaded("cranfield")
    _write_beir(tmp_path, cranfield.get_corpus_frame().head(50), cranfield.get_topics().head(5), cranfield.get_qrels())
    dataset = datasets.beir(tmp_path)
    topics = dataset.get_topics()
    assert list(topics.columns) == ["qid", "query"]  # the queries were already safe: no query_0
    judged = cranfield.get_topics().head(5)
    judged = judged[judged["qid"].isin(dataset.get_qrels()["qid"])]
    assert list(topics["query"]) == list(judged["query"])
    doc = next(iter(dataset.get_corpus_iter()))
    assert doc == {k: v for k, v in next(iter(cranfield.get_corpus_iter())).items()}


def _write_beir(folder, corpus, topics, qrels, *, split="test"):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as out:
        for row in corpus.itertuples():
            out.write(json.dumps({"_id": row.docno, "title": row.title, "text": row.text}) + "\n")
    with open(folder / "queries.jsonl", "w") as out:
        for row in topics.itertuples():
            out.write(json.dumps({"_id": row.qid, "text": row.query}) + "\n")
    qrels = qrels[qrels["qid"].isin(topics["qid"]) & qrels["docno"].isin(corpus["docno"])]
    qrels.to_csv(folder / "qrels" / f"{split}.tsv", sep="\t", index=False, header=["query-id", "corpus-id", "score"])


def _copy_fixture(tmp_path):
    folder = tmp_path / "beir"
    folder.mkdir(parents=True)
    for file in ("corpus.jsonl", "queries.jsonl"):
        (folder / file).write_text((FIXTURE / file).read_text())
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text((FIXTURE / "qrels" / "test.tsv").read_text())
    return folder


def test_beir_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.beir(tmp_path / "absent")
    folder = _copy_fixture(tmp_path)
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks \['corpus.jsonl'\]"):
        datasets.beir(folder)
    folder = _copy_fixture(tmp_path / "second")
    (folder / "qrels" / "test.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="no qrels/<split>.tsv"):
        datasets.beir(folder)


def test_beir_bad_split(tmp_path):
    dataset = datasets.beir(_copy_fixture(tmp_path))
    assert dataset.splits == ("test",)
    with pytest.raises(ValueError, match=r"no split 'dev'; its splits are \['test'\]"):
        dataset.get_qrels("dev")


def test_beir_malformed_json(tmp_path):
    folder = _copy_fixture(tmp_path)
    with open(folder / "corpus.jsonl", "a") as out:
        out.write('{"_id": "broken", "text": \n')
    with pytest.raises(ValueError, match=r"corpus.jsonl:38: not valid JSON"):
        list(datasets.beir(folder).get_corpus_iter())


def test_beir_missing_field(tmp_path):
    folder = _copy_fixture(tmp_path)
    (folder / "queries.jsonl").write_text('{"_id": "PLAIN-307", "title": "no text field"}\n')
    with pytest.raises(ValueError, match=r"queries.jsonl:1: missing field\(s\) \['text'\]"):
        datasets.beir(folder).get_topics()


def test_beir_duplicate_docno(tmp_path):
    folder = _copy_fixture(tmp_path)
    first = (folder / "corpus.jsonl").read_text().splitlines()[0]
    with open(folder / "corpus.jsonl", "a") as out:
        out.write(first + "\n")
    with pytest.raises(ValueError, match="occurs twice"):
        datasets.beir(folder).get_corpus_frame()


def test_beir_null_text(tmp_path):
    folder = _copy_fixture(tmp_path)
    with open(folder / "corpus.jsonl", "a") as out:
        out.write('{"_id": "MED-0", "title": "a title", "text": null}\n')
    with pytest.raises(ValueError, match="MED-0.*non-string 'text'"):
        list(datasets.beir(folder).get_corpus_iter())


def test_beir_duplicate_qid_and_unjudged_split(tmp_path):
    folder = _copy_fixture(tmp_path)
    lines = (folder / "queries.jsonl").read_text().splitlines()
    (folder / "queries.jsonl").write_text("\n".join([lines[0], *lines]) + "\n")
    with pytest.raises(ValueError, match=r"duplicate qid\(s\) \['PLAIN-307'\]"):
        datasets.beir(folder).get_topics()
    (folder / "queries.jsonl").write_text(lines[-1] + "\n")  # only the unjudged PLAIN-2
    with pytest.raises(ValueError, match="none of the queries judged in split 'test'"):
        datasets.beir(folder).get_topics()


def test_beir_bad_qrels_line(tmp_path):
    folder = _copy_fixture(tmp_path)
    with open(folder / "qrels" / "test.tsv", "a") as out:
        out.write("PLAIN-307\tMED-1\n")
    with pytest.raises(ValueError, match=r"test.tsv:20: expected 3 fields"):
        datasets.beir(folder).get_qrels()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nPLAIN-307\tMED-1\thigh\n")
    with pytest.raises(ValueError, match="bad relevance label 'high'"):
        datasets.beir(folder).get_qrels()
