import math

import pytest
from scipy import stats as scipy_stats

from pipeline.report.stats import MIN_SEEDS, difference, verdict


def test_paired_interval_is_students_t_on_the_per_seed_differences():
    a = {0: 50.0, 1: 52.0, 2: 51.0, 3: 53.0, 4: 50.5}
    b = {0: 48.0, 1: 49.0, 2: 49.5, 3: 50.0, 4: 48.5}
    d = difference(a, b)
    diffs = [a[s] - b[s] for s in a]
    mean, sd = sum(diffs) / 5, math.sqrt(sum((x - sum(diffs) / 5) ** 2 for x in diffs) / 4)
    half = scipy_stats.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert d["kind"] == "paired" and d["n"] == 5
    assert d["mean"] == pytest.approx(mean) and d["low"] == pytest.approx(mean - half)
    assert d["established"] and verdict(d).startswith("**established**: higher")


def test_welch_without_shared_seeds_and_the_seed_rule():
    a = {0: 50.0, 1: 51.0, 2: 52.0, 3: 50.0, 4: 51.0}
    b = {5: 50.5, 6: 51.5, 7: 49.5, 8: 50.0, 9: 51.0}
    d = difference(a, b)
    ttest = scipy_stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
    low, high = ttest.confidence_interval(0.95)
    assert d["kind"] == "welch" and d["low"] == pytest.approx(low) and d["high"] == pytest.approx(high)
    assert not d["established"] and "includes 0" in verdict(d)
    few = difference({0: 60.0, 1: 61.0}, {0: 40.0, 1: 41.5})  # a huge gap, but 2 seeds
    assert few["low"] > 0 and not few["established"] and f"fewer than {MIN_SEEDS} seeds" in verdict(few)
    assert difference({0: 1.0}, {0: 2.0, 1: 3.0}) is None and "fewer than 2 runs" in verdict(None)
