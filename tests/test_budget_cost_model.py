import numpy as np
import pytest

import pyterrier_shallow as pts
from pyterrier_shallow.budget import TokenCostModel, calibrate


def test_depth_shrinks_with_longer_texts_and_smaller_budgets():
    model = TokenCostModel(overhead_ms=2.0, ms_per_token=0.01)
    short, long = np.full(500, 40), np.full(500, 200)
    assert model.depth_for(short, 50) > model.depth_for(long, 50) > 0
    assert model.depth_for(short, 50) > model.depth_for(short, 10) > model.depth_for(short, 3)
    assert model.depth_for(short, 2.0) == 0  # nothing fits within the overhead
    assert model.depth_for([], 100) == 0
    assert model.depth_for(short[:5], 1e9) == 5


def test_depth_is_the_longest_prefix_that_fits():
    model = TokenCostModel(overhead_ms=1.0, ms_per_token=0.1)
    lengths = [10, 20, 30, 40]  # cumulative cost 2, 4, 7, 11 ms
    assert [model.depth_for(lengths, budget) for budget in (1.5, 2, 6.9, 7, 10.9, 11, 50)] == [0, 1, 2, 3, 3, 4, 4]
    assert model.predict_ms(60) == pytest.approx(7.0)
    assert model.predict_ms(0) == 0.0


def test_fit_recovers_overhead_and_per_token_cost():
    tokens = np.array([100, 400, 1600, 6400])
    model = TokenCostModel.fit(tokens, 3.0 + 0.02 * tokens)
    assert model.overhead_ms == pytest.approx(3.0)
    assert model.ms_per_token == pytest.approx(0.02)
    through_origin = TokenCostModel.fit([100, 200], [5.0, 4.0])  # a negative slope cannot be right
    assert through_origin.overhead_ms == 0 and through_origin.ms_per_token == pytest.approx(0.03)


def test_update_moves_the_per_token_cost_towards_what_was_observed():
    model = TokenCostModel(overhead_ms=1.0, ms_per_token=0.01)
    model.update(1000, 1.0 + 0.03 * 1000, weight=0.5)
    assert model.ms_per_token == pytest.approx(0.02)
    model.update(0, 500.0)
    assert model.ms_per_token == pytest.approx(0.02)
    with pytest.raises(ValueError, match="weight"):
        model.update(10, 1.0, weight=2)


@pytest.mark.parametrize(
    ("overhead", "per_token", "match"),
    [(-1.0, 0.1, "overhead_ms"), (1.0, 0.0, "ms_per_token"), (float("nan"), 0.1, "overhead_ms")],
)
def test_invalid_cost_models_are_refused(overhead, per_token, match):
    with pytest.raises(ValueError, match=match):
        TokenCostModel(overhead_ms=overhead, ms_per_token=per_token)


def test_fit_needs_two_token_counts():
    with pytest.raises(ValueError, match="two different"):
        TokenCostModel.fit([100, 100], [1.0, 2.0])
    with pytest.raises(ValueError, match="token counts"):
        TokenCostModel.fit([100, 200], [1.0])


def test_calibrate_on_a_real_cross_encoder(shallow_checkpoint, nfcorpus_pairs):
    ce = pts.CrossEncoder(shallow_checkpoint, max_length=256, warn_truncation=False)
    queries, texts = nfcorpus_pairs["query"].tolist()[:16], nfcorpus_pairs["text"].tolist()[:16]
    calls = []

    def score_pairs(q, t):
        calls.append(len(q))
        return ce.score_pairs(q, t)

    lengths = ce._pairs.encode(queries, texts).lengths if ce.network is not None else None
    model = calibrate(score_pairs, queries, texts, lengths, sizes=(1, 4, 16), repeats=2)
    assert model.ms_per_token > 0 and model.overhead_ms >= 0
    assert calls == [16, 1, 1, 4, 4, 16, 16]  # one warm-up call, then each size twice
    with pytest.raises(ValueError, match="at least one pair"):
        calibrate(score_pairs, [], [], [])
