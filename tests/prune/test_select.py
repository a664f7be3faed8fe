"""Coreset selectors: exact sizes, class stratification, CCS's hard cut-off and coverage."""

import numpy as np
import pytest

from pipeline.prune.select import ccs, class_quotas, hardest, kept_count, random_stratified


@pytest.mark.parametrize("ratio,n,expected", [(1 - 1 / 24, 10000, 417), (1 - 2 / 24, 10000, 833),
                                              (1 - 4 / 24, 10000, 1667), (0.9, 160, 16), (0.0, 7, 7)])
def test_pruning_at_ratio_r_keeps_round_of_1_minus_r_times_n(ratio, n, expected):
    assert kept_count(ratio, n) == expected == round((1 - ratio) * n)


def test_class_quotas_sum_exactly_and_follow_class_sizes():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    quota = class_quotas(labels, 11)
    assert quota.sum() == 11 and list(quota) == [6, 3, 2]


@pytest.mark.parametrize("keep", [1, 17, 417, 1000])
def test_random_is_class_stratified_and_exact(keep):
    labels = np.repeat(np.arange(10), 100)
    kept = random_stratified(labels, keep, seed=0)
    assert len(kept) == keep == len(np.unique(kept))
    counts = np.bincount(labels[kept], minlength=10)
    assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(kept, random_stratified(labels, keep, seed=0))
    assert not np.array_equal(kept, random_stratified(labels, keep, seed=1)) or keep == 1000


def test_hardest_keeps_the_top_scores():
    score = np.array([0.1, 5.0, 3.0, 3.0, -1.0])
    np.testing.assert_array_equal(hardest(score, 3), [1, 2, 3])


def test_ccs_drops_the_hardest_and_covers_the_score_range():
    rng = np.random.default_rng(0)
    score = rng.normal(size=5000)
    keep = 200
    kept = ccs(score, keep, seed=0, strata=20, hard_prune=0.1)
    assert len(kept) == keep == len(np.unique(kept))
    cut = np.sort(score)[::-1][int(0.1 * len(score)) - 1]
    assert score[kept].max() < cut  # nothing from the hardest 10%
    # coverage: the kept set spans the remaining range, unlike keeping the hardest
    pool = np.sort(score)[: len(score) - int(0.1 * len(score))]
    assert score[kept].min() < np.quantile(pool, 0.01)
    # fewer samples than random would take from the dense middle: CCS flattens the score distribution
    middle = (np.abs(score[kept]) < 0.5).mean()
    assert middle < (np.abs(pool) < 0.5).mean()
    np.testing.assert_array_equal(kept, ccs(score, keep, seed=0, strata=20, hard_prune=0.1))


@pytest.mark.parametrize("keep", [1, 37, 499, 900])
def test_ccs_is_exact_for_any_budget(keep):
    score = np.random.default_rng(1).exponential(size=1000)
    kept = ccs(score, keep, seed=0, strata=50, hard_prune=0.3)
    assert len(kept) == keep == len(np.unique(kept))
