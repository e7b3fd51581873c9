import pytest
import torch

from pyterrier_shallow.sparse import AttentionPattern
from pyterrier_shallow.sparse.pattern import CLS, DOC, PAD, QUERY

# [CLS] q q [SEP] d d d d [SEP] pad
GROUPS = torch.tensor([[CLS, QUERY, QUERY, QUERY, DOC, DOC, DOC, DOC, DOC, PAD]])


def test_default_is_the_papers_pattern():
    pattern = AttentionPattern()
    assert pattern.window == 4
    assert pattern.shares_query
    assert not pattern.is_dense
    assert pattern.group_table().tolist() == [[True, True, True], [False, True, False], [True, True, True]]


def test_dense_pattern():
    pattern = AttentionPattern.dense()
    assert pattern.is_dense and not pattern.shares_query
    mask = pattern.token_mask(GROUPS)[0]
    assert mask[:, :9].all() and not mask[:, 9].any()


def test_token_mask_of_the_default_pattern_with_window_one():
    mask = AttentionPattern(window=1).token_mask(GROUPS)[0].int()
    expected = [
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 0],  # [CLS] sees everything real
        [0, 1, 1, 1, 0, 0, 0, 0, 0, 0],  # query tokens (and the query's [SEP]) see only the query
        [0, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],  # document tokens: [CLS], the query and one neighbour each side
        [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0, 1, 1, 1, 0],
        [1, 1, 1, 1, 0, 0, 0, 1, 1, 0],  # the final [SEP] is a document token
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 0],  # padding rows see every real token (their output is unused)
    ]
    assert mask.tolist() == expected


def test_flags_switch_group_pairs():
    pattern = AttentionPattern(window=None, cls_to_doc=False, doc_to_query=False, query_to_cls=True)
    mask = pattern.token_mask(GROUPS)[0]
    assert not mask[0, 4:].any() and mask[0, :4].all()
    assert mask[1, 0] and not mask[1, 4:].any()
    assert not mask[4, 1:4].any() and mask[4, 0] and mask[4, 4:9].all()
    assert not pattern.shares_query


@pytest.mark.parametrize("window", [-1, 1.5, True, "4"])
def test_bad_windows_are_rejected(window):
    with pytest.raises((ValueError, TypeError), match="window"):
        AttentionPattern(window=window)


def test_patterns_are_hashable_values():
    assert AttentionPattern(window=2) == AttentionPattern(window=2)
    assert len({AttentionPattern(window=2), AttentionPattern(window=2), AttentionPattern()}) == 2
