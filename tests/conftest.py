"""Shared fixtures: the real collections in ``../shared/data`` and small models built from offline weights."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PT_TEST_TRANSFORMER_REPORTS", "0")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PYTERRIER_SHALLOW_DATA", REPO_ROOT.parent / "shared" / "data"))
ORDER_VAR = "PYTERRIER_SHALLOW_TEST_ORDER"
"""Set to ``reverse`` to run the tests last to first (CI does, once), so that no test leans on an earlier one."""


def pytest_collection_modifyitems(config, items):
    """Reverses the test order when ``PYTERRIER_SHALLOW_TEST_ORDER=reverse``."""
    order = os.environ.get(ORDER_VAR, "")
    if order not in ("", "reverse"):
        raise pytest.UsageError(f"{ORDER_VAR} must be 'reverse' or unset, not {order!r}")
    if order == "reverse":
        items.reverse()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models run faster on one thread than on two contended ones; the setting is restored afterwards.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    from pyterrier_shallow.train.cli_run import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real test collections (``../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test collections not found at {SHARED_DATA}")
    return SHARED_DATA


def _build_shallow_checkpoint(directory: Path, *, num_labels: int) -> Path:
    """Saves the first two layers of all-MiniLM-L6-v2 with a seeded, fresh classification head."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from pyterrier_shallow._hf import minilm_path

    source = minilm_path()
    config = BertConfig.from_pretrained(source, num_hidden_layers=2, num_labels=num_labels)
    torch.manual_seed(13)
    model = BertForSequenceClassification.from_pretrained(source, config=config)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(source).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def shallow_checkpoint(tmp_path_factory) -> Path:
    """A 2-layer cross-encoder checkpoint (one-logit head) cut from all-MiniLM-L6-v2."""
    return _build_shallow_checkpoint(tmp_path_factory.mktemp("ce-1logit"), num_labels=1)


@pytest.fixture(scope="session")
def two_logit_checkpoint(tmp_path_factory) -> Path:
    """A 2-layer cross-encoder checkpoint with a two-logit head."""
    return _build_shallow_checkpoint(tmp_path_factory.mktemp("ce-2logit"), num_labels=2)


@pytest.fixture(scope="session")
def nfcorpus_pairs(shared_data):
    """60 real (query, document) pairs from NFCorpus test: 6 queries x 10 documents, some over 256 tokens."""
    import pandas as pd

    docs = {}
    with open(shared_data / "nfcorpus" / "test.docs", encoding="utf-8") as handle:
        for line in handle:
            docno, text = line.rstrip("\n").split("\t", 1)
            docs[docno] = text
            if len(docs) == 10:
                break
    with open(shared_data / "nfcorpus" / "queries.beir-test.tsv", encoding="utf-8") as handle:
        queries = [line.rstrip("\n").split("\t", 1) for line, _ in zip(handle, range(6))]
    rows = [(qid, query, docno, text) for qid, query in queries for docno, text in docs.items()]
    return pd.DataFrame(rows, columns=["qid", "query", "docno", "text"])


@pytest.fixture(scope="session")
def fixture_nfcorpus_pairs():
    """Real NFCorpus queries, each with three real documents, from the repository's excerpt (no ``../shared``)."""
    import pandas as pd

    folder = Path(__file__).parent / "fixtures" / "beir_nfcorpus"
    queries = pd.read_json(folder / "queries.jsonl", lines=True)
    docs = pd.read_json(folder / "corpus.jsonl", lines=True)
    rows = []
    for index, query in enumerate(queries.itertuples()):
        for offset in range(3):
            doc = docs.iloc[(index * 3 + offset) % len(docs)]
            rows.append({"qid": str(query._1), "query": query.text, "docno": str(doc["_id"]),
                         "text": f"{doc['title']} {doc['text']}"})
    return pd.DataFrame(rows)
