"""faiss K-means (GPU faiss when present and the runtime is CUDA, faiss-cpu otherwise)."""

from __future__ import annotations

import numpy as np


def faiss_kmeans(x: np.ndarray, k: int, iterations: int, seed: int, use_gpu: bool = False,
                 n_init: int = 1, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (k,D) float32 and assignments (N,) int64 of `x` (N,D), optionally with per-point
    weights (K-means of a multiset given as distinct points + counts). All points are used (no
    faiss-side subsampling): callers subsample explicitly, with their own seed, when they want to."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < k:
        raise ValueError(f"K-means needs at least k={k} points, got {len(x)}")
    gpu = use_gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(
        x.shape[1], k, niter=iterations, seed=seed, nredo=n_init, gpu=gpu, verbose=False,
        max_points_per_centroid=max(1, (len(x) + k - 1) // k), min_points_per_centroid=1,
    )
    km.train(x, weights=None if weights is None else np.ascontiguousarray(weights, dtype=np.float32))
    _, assign = km.index.search(x, 1)
    return km.centroids.astype(np.float32), assign[:, 0].astype(np.int64)
