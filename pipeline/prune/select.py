"""Coreset selection: which rows of the train set a pruning method keeps.

Every selector returns exactly `keep` sorted row indices, deterministic for a given seed:
  random      class-stratified uniform sample (each class keeps its share, largest remainders rounded up)
  <score>     the `keep` hardest samples by one importance score (aum, el2n, forgetting, entropy)
  ccs         coverage-centric coreset selection (Zheng et al. 2023): drop the `hard_prune` fraction of
              hardest samples (likely mislabelled), split the score range into `strata` equal-width bins,
              and fill the budget from the smallest bin up, each taking at most an equal share of what is
              left, sampled uniformly inside the bin.
"""

from __future__ import annotations

import numpy as np


def kept_count(ratio: float, n: int) -> int:
    """Pruning at ratio r (fraction removed) keeps round((1 - r) N) images."""
    return round((1.0 - ratio) * n)


def class_quotas(labels: np.ndarray, keep: int) -> np.ndarray:
    """Per-class counts proportional to class sizes that sum to exactly `keep` (largest remainder)."""
    sizes = np.bincount(labels)
    exact = sizes * keep / len(labels)
    quota = np.floor(exact).astype(np.int64)
    short = keep - int(quota.sum())
    order = np.lexsort((np.arange(len(sizes)), -(exact - quota)))  # largest remainder, then lowest class
    quota[order[:short]] += 1
    return np.minimum(quota, sizes)


def random_stratified(labels: np.ndarray, keep: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = []
    for cls, quota in enumerate(class_quotas(labels, keep)):
        rows = np.flatnonzero(labels == cls)
        chosen.append(rng.choice(rows, int(quota), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def hardest(importance: np.ndarray, keep: int) -> np.ndarray:
    order = np.lexsort((np.arange(len(importance)), -importance))  # hardest first, ties by row
    return np.sort(order[:keep])


def ccs(importance: np.ndarray, keep: int, seed: int, strata: int = 50, hard_prune: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(importance)
    order = np.lexsort((np.arange(n), -importance))
    n_hard = int(hard_prune * n)
    if n - n_hard < keep:  # never drop so many that the budget can't be met
        n_hard = n - keep
    pool = np.sort(order[n_hard:])
    values = importance[pool]
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi, strata + 1)
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, strata - 1)
    members = [pool[bins == b] for b in range(strata)]
    members = [m for m in members if len(m)]
    chosen = []
    budget = keep
    for i, rows in enumerate(sorted(members, key=len)):
        take = min(len(rows), budget // (len(members) - i))
        chosen.append(rng.choice(rows, take, replace=False))
        budget -= take
    chosen = np.concatenate(chosen)
    if budget > 0:  # floor division can leave a few slots; fill them uniformly from the rest of the pool
        chosen = np.concatenate([chosen, rng.choice(np.setdiff1d(pool, chosen), budget, replace=False)])
    return np.sort(chosen)
