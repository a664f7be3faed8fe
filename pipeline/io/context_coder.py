"""Lossless coding of palette-index maps: a context model shared by the whole store and a range coder.

The model: each index is coded with the probabilities of its context, the indices of its first `neighbours`
causal neighbours (W, N, NW, NE, WW, NN, in that order) and, with `cluster_context`, the image's cluster. The
probabilities come from the counts of every pixel of the store (+1/2 each, so no index is impossible) and are
stored quantized to 16 bits; encoder and decoder both use `probabilities(model)`, so they agree bit for bit.
`best_neighbours` picks the count that minimises model bytes plus the ideal code length of the counts.

The coder: constriction's range coder (a maintained library), one stream per block of images. Decoding runs in
wavefront order (t = 2y + x): every neighbour above lies on an earlier wavefront, so each wavefront of a whole block
decodes in one vectorised call (94 calls for 32x32 images, whatever the block size).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

NEIGHBOURS = ((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0))  # W, N, NW, NE, WW, NN
PAD_TOP, PAD_LEFT, PAD_RIGHT = 2, 2, 1  # room for every neighbour above; outside the image an index reads as 0
MODEL_DTYPE = np.uint16
MODEL_SCALE = np.iinfo(MODEL_DTYPE).max


def padded(maps: np.ndarray) -> np.ndarray:
    return np.pad(maps.astype(np.int64), ((0, 0), (PAD_TOP, 0), (PAD_LEFT, PAD_RIGHT)))


def num_contexts(alphabet: int, neighbours: int, clusters: int) -> int:
    return clusters * alphabet ** neighbours


def contexts_at(pad: np.ndarray, clusters: np.ndarray, ys: np.ndarray, xs: np.ndarray, alphabet: int,
                neighbours: int) -> np.ndarray:
    """(n_images, len(ys)) context ids of pixels (ys, xs) of every image, from the padded maps decoded so far;
    `clusters` is each image's cluster (all zeros without the cluster context)."""
    ctx = np.broadcast_to(clusters.astype(np.int64)[:, None], (len(pad), len(ys)))
    for dy, dx in NEIGHBOURS[:neighbours]:
        ctx = ctx * alphabet + pad[:, ys + PAD_TOP + dy, xs + PAD_LEFT + dx]
    return ctx


@lru_cache(maxsize=8)
def wavefronts(h: int, w: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(ys, xs) of each wavefront t = 2y + x, in coding order."""
    ys, xs = np.mgrid[0:h, 0:w]
    t = (2 * ys + xs).ravel()
    order = np.argsort(t, kind="stable")
    ys, xs, t = ys.ravel()[order], xs.ravel()[order], t[order]
    cuts = np.flatnonzero(np.diff(t)) + 1
    return tuple(zip(np.split(ys, cuts), np.split(xs, cuts)))


def context_counts(maps: np.ndarray, clusters: np.ndarray, alphabet: int, neighbours: int,
                   n_clusters: int) -> np.ndarray:
    """int64 (contexts, alphabet) counts of every index of `maps` (n, H, W) in its context."""
    h, w = maps.shape[1:]
    ys, xs = (a.ravel() for a in np.mgrid[0:h, 0:w])
    ctx = contexts_at(padded(maps), clusters, ys, xs, alphabet, neighbours)
    contexts = num_contexts(alphabet, neighbours, n_clusters)
    flat = (ctx * alphabet + maps.reshape(len(maps), -1)).ravel()
    return np.bincount(flat, minlength=contexts * alphabet).reshape(contexts, alphabet)


def model_bytes(alphabet: int, neighbours: int, clusters: int) -> int:
    return num_contexts(alphabet, neighbours, clusters) * alphabet * MODEL_DTYPE().itemsize


def quantized_model(counts: np.ndarray) -> np.ndarray:
    """The stored model: each context's smoothed probabilities (counts + 1/2) as uint16 in 1..65535."""
    p = (counts + 0.5) / (counts + 0.5).sum(1, keepdims=True)
    return np.clip(np.rint(p * MODEL_SCALE), 1, MODEL_SCALE).astype(MODEL_DTYPE)


def probabilities(model: np.ndarray) -> np.ndarray:
    """float32 (contexts, alphabet) probabilities the coder uses, from the stored model (encoder and decoder)."""
    table = model.astype(np.float64)
    return (table / table.sum(1, keepdims=True)).astype(np.float32)


def ideal_bytes(counts: np.ndarray) -> float:
    """Bytes of an ideal coder of `counts` with the model `quantized_model(counts)` (no stream overhead)."""
    p = probabilities(quantized_model(counts)).astype(np.float64)
    return float(-(counts * np.log2(p)).sum() / 8)


def best_neighbours(count_of: dict[int, np.ndarray], alphabet: int, clusters: int) -> int:
    """The neighbour count whose model plus ideal code is smallest; `count_of[n]` = counts with n neighbours."""
    cost = {n: model_bytes(alphabet, n, clusters) + ideal_bytes(c) for n, c in count_of.items()}
    return min(cost, key=lambda n: (cost[n], n))


def encode_block(maps: np.ndarray, clusters: np.ndarray, table: np.ndarray, alphabet: int,
                 neighbours: int) -> np.ndarray:
    """uint32 range-coder words of one block of maps (n, H, W) under the probabilities `table`."""
    import constriction

    family = constriction.stream.model.Categorical(perfect=False)
    pad = padded(maps)
    encoder = constriction.stream.queue.RangeEncoder()
    for ys, xs in wavefronts(*maps.shape[1:]):
        ctx = contexts_at(pad, clusters, ys, xs, alphabet, neighbours).ravel()
        encoder.encode(maps[:, ys, xs].ravel().astype(np.int32), family, table[ctx])
    return np.asarray(encoder.get_compressed(), dtype=np.uint32)


def decode_block(words: np.ndarray, clusters: np.ndarray, table: np.ndarray, alphabet: int, neighbours: int,
                 shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 maps (n, H, W) of one block from its words (inverse of `encode_block`)."""
    import constriction

    family = constriction.stream.model.Categorical(perfect=False)
    n, h, w = shape
    pad = np.zeros((n, h + PAD_TOP, w + PAD_LEFT + PAD_RIGHT), np.int64)
    decoder = constriction.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
    for ys, xs in wavefronts(h, w):
        ctx = contexts_at(pad, clusters, ys, xs, alphabet, neighbours).ravel()
        pad[:, ys + PAD_TOP, xs + PAD_LEFT] = np.asarray(decoder.decode(family, table[ctx])).reshape(n, len(ys))
    return pad[:, PAD_TOP:, PAD_LEFT:PAD_LEFT + w].astype(np.uint8)
