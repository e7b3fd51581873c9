"""Pair tokenising: long documents are cut before tokenising without changing what any pair keeps."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from pyterrier_shallow import datasets
from pyterrier_shallow._hf import minilm_path
from pyterrier_shallow._pair_tokenizer import PairTokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def texts():
    abstracts = [doc["text"] for doc, _ in zip(datasets.vaswani().get_corpus_iter(), range(400))]
    long_ones = [" ".join(abstracts[start:start + 150]) for start in range(0, 300, 30)]  # ~100,000 characters
    no_space = ["x" * 50_000, "长" * 20_000]  # nothing to cut at: tokenised whole
    rare = ["supercalifragilistic" * 3 + " " + "antidisestablishmentarianism " * 800]  # many tokens a word
    return abstracts[:50] + long_ones + no_space + rare


@pytest.mark.parametrize(("doc_length", "max_length"), [(None, 512), (64, 512), (200, 256)])
def test_capped_tokenising_keeps_exactly_what_whole_tokenising_keeps(tokenizer, texts, doc_length, max_length):
    pairs = PairTokenizer(tokenizer, query_length=32, doc_length=doc_length, max_length=max_length)
    queries = ["dielectric constant of liquids", "a much longer query about the measurement of many things"]
    query_list = [queries[number % 2] for number in range(len(texts))]
    capped = pairs.encode(query_list, texts)
    whole_ids = pairs._tokenize(texts)  # no cap: every token of every text
    query_tokens = {query: len(tokenizer(query, add_special_tokens=False)["input_ids"][:32]) for query in queries}
    expected_lengths = []
    for pair, ids in enumerate(whole_ids):
        kept = capped.pair_doc_length[pair]
        assert capped.doc_ids[capped.pair_doc[pair]][:kept] == ids[:kept]
        room = max_length - pairs.num_special_tokens - query_tokens[query_list[pair]]
        room = room if doc_length is None else min(room, doc_length)
        assert kept == min(len(ids), room)
        expected_lengths.append(query_tokens[query_list[pair]] + kept + pairs.num_special_tokens)
    np.testing.assert_array_equal(capped.lengths, expected_lengths)
    assert capped.truncated_docs == sum(
        len(ids) > capped.pair_doc_length[pair] for pair, ids in enumerate(whole_ids))
