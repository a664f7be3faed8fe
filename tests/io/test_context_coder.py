"""The context coder on real DCQ index maps: every map round-trips at every neighbour count, the wavefront order
only reads decoded pixels, the stored model is valid, and the neighbour count is the cheapest one."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.io import context_coder as cc
from pipeline.io.dcq_store import DCQStore


@pytest.fixture(scope="module")
def real_maps(small_run):
    return {q: DCQStore(small_run.dcq(q)) for q in (1, 2)}


@pytest.mark.parametrize("q", [1, 2])
@pytest.mark.parametrize("neighbours", range(len(cc.NEIGHBOURS) + 1))
@pytest.mark.parametrize("by_cluster", [True, False])
def test_every_map_round_trips(real_maps, q, neighbours, by_cluster):
    store = real_maps[q]
    alphabet, groups = 2 ** q, (len(store.palettes) if by_cluster else 1)
    if cc.num_contexts(alphabet, neighbours, groups) * alphabet > 1 << 20:
        pytest.skip("a model this large is never chosen")
    maps = store.indices()
    clusters = store.clusters if by_cluster else np.zeros(len(maps), np.int64)
    table = cc.probabilities(cc.quantized_model(cc.context_counts(maps, clusters, alphabet, neighbours, groups)))
    for lo, hi in ((0, 37), (37, len(maps))):
        words = cc.encode_block(maps[lo:hi], clusters[lo:hi], table, alphabet, neighbours)
        assert words.dtype == np.uint32 and len(words) > 0
        decoded = cc.decode_block(words, clusters[lo:hi], table, alphabet, neighbours, maps[lo:hi].shape)
        np.testing.assert_array_equal(decoded, maps[lo:hi])


def test_wavefronts_cover_every_pixel_once_after_all_its_neighbours():
    h, w = 9, 7
    fronts = cc.wavefronts(h, w)
    when = np.full((h, w), -1)
    for t, (ys, xs) in enumerate(fronts):
        assert (when[ys, xs] == -1).all()
        when[ys, xs] = t
    assert (when >= 0).all()
    for y in range(h):
        for x in range(w):
            for dy, dx in cc.NEIGHBOURS:
                if 0 <= y + dy and 0 <= x + dx < w:
                    assert when[y + dy, x + dx] < when[y, x], ((y, x), (dy, dx))


def test_the_stored_model_gives_every_index_a_chance_and_unseen_contexts_a_uniform_guess():
    counts = np.array([[0, 0, 0, 0], [1000, 0, 0, 3], [5, 5, 5, 5]])
    model = cc.quantized_model(counts)
    assert model.dtype == np.uint16 and model.min() >= 1
    p = cc.probabilities(model)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[0], 0.25, rtol=1e-4)
    assert p[1, 0] > 0.99 and p[1, 1] > 0


def test_neighbours_pay_on_real_images_and_the_cheapest_count_is_chosen(real_maps):
    store = real_maps[1]
    maps, k = store.indices(), len(store.palettes)
    counts = {n: cc.context_counts(maps, store.clusters, 2, n, k) for n in range(5)}
    ideal = {n: cc.ideal_bytes(c) for n, c in counts.items()}
    assert ideal[4] < 0.7 * ideal[0]  # neighbouring indices of real images agree: far below 1 bit per pixel
    chosen = cc.best_neighbours(counts, 2, k)
    cost = {n: cc.model_bytes(2, n, k) + ideal[n] for n in counts}
    assert cost[chosen] == min(cost.values())
    # a model far too large for the data is never worth its bytes
    assert cc.best_neighbours(counts, 2, 10 ** 6) == 0


def test_the_coded_stream_is_close_to_the_ideal_code_length(real_maps):
    store = real_maps[2]
    maps, k = store.indices(), len(store.palettes)
    counts = cc.context_counts(maps, store.clusters, 4, 2, k)
    table = cc.probabilities(cc.quantized_model(counts))
    words = cc.encode_block(maps, store.clusters, table, 4, 2)
    assert 4 * len(words) <= cc.ideal_bytes(counts) * 1.02 + 8
