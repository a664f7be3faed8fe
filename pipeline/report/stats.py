"""Differences between two methods' test accuracies over seeds, with a 95% confidence interval.

Runs that share a seed (the same initialisation and batch order on another train set) are paired: the interval
is Student's t on the per-seed differences. Without at least two shared seeds it is Welch's interval on the two
groups. A difference counts as established only when the interval excludes zero and each side has at least
`MIN_SEEDS` runs (the project's rule: fewer seeds say nothing either way)."""

from __future__ import annotations

import math

from scipy import stats

MIN_SEEDS = 5
LEVEL = 0.95


def difference(a: dict[int, float], b: dict[int, float], level: float = LEVEL) -> dict | None:
    """a - b: accuracies by seed. None when either side has fewer than two runs."""
    if len(a) < 2 or len(b) < 2:
        return None
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        diffs = [a[s] - b[s] for s in shared]
        n = len(diffs)
        mean = sum(diffs) / n
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
        kind, count = "paired", n
    else:
        va, vb = list(a.values()), list(b.values())
        ma, mb = sum(va) / len(va), sum(vb) / len(vb)
        sa2 = sum((v - ma) ** 2 for v in va) / (len(va) - 1)
        sb2 = sum((v - mb) ** 2 for v in vb) / (len(vb) - 1)
        se2 = sa2 / len(va) + sb2 / len(vb)
        df = se2 ** 2 / ((sa2 / len(va)) ** 2 / (len(va) - 1) + (sb2 / len(vb)) ** 2 / (len(vb) - 1)) if se2 else 1
        mean, sd = ma - mb, math.sqrt(se2)
        half = stats.t.ppf(0.5 + level / 2, df) * sd
        kind, count = "welch", min(len(va), len(vb))
    low, high = mean - half, mean + half
    enough = min(len(a), len(b)) >= MIN_SEEDS
    return {"mean": mean, "sd": sd, "low": low, "high": high, "n": count, "kind": kind,
            "established": enough and (low > 0 or high < 0), "enough_seeds": enough}


def half_interval(std: float, n: int, level: float = LEVEL) -> float:
    """Half width of the t interval of a mean of n runs with sample std `std` (0 for a single run)."""
    return 0.0 if n < 2 else float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def verdict(diff: dict | None) -> str:
    if diff is None:
        return "not established (fewer than 2 runs)"
    if not diff["enough_seeds"]:
        return f"not established (fewer than {MIN_SEEDS} seeds)"
    if diff["established"]:
        return "**established**: " + ("higher" if diff["low"] > 0 else "lower")
    return "not established (interval includes 0)"
