"""LocalDataset: a test collection read from local files, with the frame shapes of ``pt.get_dataset``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyterrier as pt

DocIter = Iterable[dict[str, str]]


@dataclass(frozen=True)
class Split:
    """How to read one split of a collection; each reader is called lazily, at most once.

    Attributes:
        topics: Returns the topic frame (``qid``, ``query``, maybe ``query_0``).
        qrels: Returns the qrels frame (``qid``, ``docno``, ``label``).
        corpus: Returns the documents (dicts with ``docno``, ``text`` and maybe ``title``); ``None`` when the text
            is not available.
        results: Returns a candidate result frame to rerank, if the collection defines one.
    """

    topics: Callable[[], pd.DataFrame]
    qrels: Callable[[], pd.DataFrame]
    corpus: Callable[[], DocIter] | None = None
    results: Callable[[], pd.DataFrame] | None = None


class LocalDataset(pt.datasets.Dataset):
    """A test collection read from local files; frames have the shapes that ``pt.get_dataset("irds:...")`` gives.

    A collection has one or more named splits (``dataset.splits``; the first is the default). Each split has its
    topics and qrels, and may have its own corpus (NFCorpus and WikiQA do); ``qid`` and ``docno`` are always ``str``.

    Example::

        dataset = pyterrier_shallow.datasets.nfcorpus()
        topics, qrels = dataset.get_topics("test"), dataset.get_qrels("test")
        docs = dataset.get_corpus_iter(split="test")

    Args:
        name: The collection's name.
        path: The folder it is read from.
        splits: The readers of each split, in order; the first is the default.
        no_corpus_reason: The error message for a collection without document text.
    """

    def __init__(self, name: str, path: Path, splits: Mapping[str, Split], *, no_corpus_reason: str | None = None):
        if not splits:
            raise ValueError(f"{name}: a dataset needs at least one split")
        self.name = name
        self.path = Path(path)
        self._splits = dict(splits)
        self._no_corpus_reason = no_corpus_reason
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names; the first is the default."""
        return tuple(self._splits)

    @property
    def default_split(self) -> str:
        """The split used when none is named."""
        return self.splits[0]

    def __repr__(self) -> str:
        return f"LocalDataset({self.name!r}, path={str(self.path)!r}, splits={self.splits})"

    def get_topics(self, split: str | None = None) -> pd.DataFrame:
        """Returns the topics of ``split`` (default: the first split).

        Columns: ``qid``, ``query`` and, when the query text had to be made safe for query parsers, the original
        text in ``query_0``.
        """
        return self._frame(split, "topics")

    def get_qrels(self, split: str | None = None) -> pd.DataFrame:
        """Returns the relevance judgements of ``split``: ``qid``, ``docno`` (str) and ``label`` (int64)."""
        return self._frame(split, "qrels")

    def get_topicsqrels(self, split: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Returns ``(topics, qrels)`` of ``split``, e.g. for ``pt.Experiment``."""
        return self.get_topics(split), self.get_qrels(split)

    def get_results(self, split: str | None = None) -> pd.DataFrame:
        """Returns the collection's own candidates to rerank for ``split`` (WikiQA).

        Columns: ``qid``, ``query`` (and ``query_0``), ``docno``, ``text``.
        """
        name = self._split_name(split)
        if self._splits[name].results is None:
            raise NotImplementedError(f"{self.name} has no candidate result frame; retrieve candidates instead")
        return self._frame(name, "results")

    def get_corpus_iter(self, verbose: bool = False, *, split: str | None = None) -> Iterator[dict[str, str]]:
        """Yields the documents of ``split``'s corpus: dicts with ``docno``, ``text`` and maybe ``title``.

        Args:
            verbose: Show a progress bar.
            split: The split whose corpus to read (default: the first split; most collections have one corpus).

        Raises:
            NotImplementedError: When the collection has no document text.
            ValueError: On a document with a missing or duplicate docno or a non-string field.
        """
        name = self._split_name(split)
        corpus = self._splits[name].corpus
        if corpus is None:
            raise NotImplementedError(self._no_corpus_reason or f"{self.name} has no document text")
        documents = pt.tqdm(corpus(), desc=f"{self.name} documents", unit="doc", disable=not verbose)
        return _checked(documents, self.name)

    def get_corpus_frame(self, split: str | None = None) -> pd.DataFrame:
        """Returns the corpus of ``split`` as a frame: ``docno``, ``text`` and, where available, ``title``."""
        name = self._split_name(split)
        key = (name, "corpus")
        if key not in self._cache:
            self._cache[key] = pd.DataFrame(list(self.get_corpus_iter(split=name)))
        return self._cache[key].copy()

    def get_corpus_lang(self) -> str:
        """The corpus language (ISO 639-1)."""
        return "en"

    def get_topics_lang(self) -> str:
        """The topics' language (ISO 639-1)."""
        return "en"

    def _split_name(self, split: str | None) -> str:
        if split is None:
            return self.default_split
        if split not in self._splits:
            raise ValueError(f"{self.name} has no split {split!r}; its splits are {list(self.splits)}")
        return split

    def _frame(self, split: str | None, component: str) -> pd.DataFrame:
        name = self._split_name(split)
        key = (name, component)
        if key not in self._cache:
            self._cache[key] = getattr(self._splits[name], component)()
        return self._cache[key].copy()

    def _describe_component(self, component: str) -> bool | list[str] | None:
        if component in ("topics", "qrels"):
            return list(self.splits) if len(self.splits) > 1 else True
        if component == "corpus":
            return any(split.corpus is not None for split in self._splits.values()) or None
        if component == "results":
            return any(split.results is not None for split in self._splits.values()) or None
        return None


def _checked(documents: Iterable[dict[str, str]], name: str) -> Iterator[dict[str, str]]:
    """Passes documents through, raising ``ValueError`` on a missing, empty or repeated docno or a non-str field."""
    seen: set[str] = set()
    for document in documents:
        docno = document.get("docno")
        if not isinstance(docno, str) or not docno:
            raise ValueError(f"{name}: a document has no docno (after {len(seen)} documents): {document!r:.200}")
        if docno in seen:
            raise ValueError(f"{name}: docno {docno!r} occurs twice in the corpus")
        for field, value in document.items():
            if not isinstance(value, str):
                raise ValueError(f"{name}: document {docno!r} has a non-string {field!r}: {value!r:.80}")
        seen.add(docno)
        yield document
