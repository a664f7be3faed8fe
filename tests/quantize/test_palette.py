import numpy as np
import torch

from pipeline.io.bitpack import unpack
from pipeline.quantize.color import rgb_to_lab
from pipeline.quantize.encode_store import encode_block
from pipeline.quantize.palette import fit_palette, nearest


def test_cluster_with_fewer_colours_than_the_palette(small_run):
    import zarr

    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:4]
    posterized = (images // 128 * 255).astype(np.uint8)  # at most 8 distinct colours
    pixels = posterized.reshape(-1, 3)
    distinct = len(np.unique(pixels, axis=0))
    palette, n = fit_palette(pixels, 64, iterations=5, seed=0, max_pixels=None)
    assert n == distinct < 64 and palette.shape == (64, 3)
    packed = encode_block(torch.from_numpy(posterized), torch.zeros(4, dtype=torch.long),
                          torch.from_numpy(palette)[None], 6)
    used = np.unique(unpack(packed, 6, 1024))
    assert used.max() < distinct  # padded entries are never chosen
    np.testing.assert_allclose(palette[:distinct], rgb_to_lab(torch.from_numpy(np.unique(pixels, axis=0))).numpy())


def test_empty_cluster_and_kmeans_sizes(small_run):
    pal, n = fit_palette(np.zeros((0, 3), np.uint8), 4, 5, 0, None)
    assert n == 0 and pal.shape == (4, 3)
    rng = np.random.default_rng(0)
    pal, n = fit_palette(rng.integers(0, 256, (5000, 3), dtype=np.uint8), 16, 10, 0, max_pixels=1000)
    assert n == 16 and len(np.unique(pal.round(3), axis=0)) == 16


def test_nearest_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    lab = torch.rand(3, 500, 3, generator=g) * 100
    pal = torch.rand(3, 8, 3, generator=g) * 100
    brute = torch.cdist(lab.double(), pal.double()).argmin(-1)
    assert torch.equal(nearest(lab, pal, max_elements=1000), brute)


def test_colour_counts_pooled_block_by_block_give_the_same_palette(small_run):
    """Streaming a cluster's pixels as colour counts is exact: the same palette as K-means on all its pixels."""
    import zarr

    from pipeline.quantize.palette import ColourCounts, fit_palette_counts

    pixels = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:40].reshape(-1, 3)
    counts = ColourCounts()
    for block in np.array_split(pixels, 7):
        counts.add(block)
    assert counts.pixels == len(pixels)
    for q in (1, 3):
        expected = fit_palette(pixels, 2**q, 10, 0, None)
        got = fit_palette_counts(counts, 2**q, 10, 0, None)
        np.testing.assert_array_equal(got[0], expected[0])
        assert got[1] == expected[1]
    # above max_pixels: a seeded sample of exactly that many pixels, the same every time
    a, b = fit_palette_counts(counts, 8, 10, 3, 5000), fit_palette_counts(counts, 8, 10, 3, 5000)
    np.testing.assert_array_equal(a[0], b[0])
    assert np.random.default_rng(3).multivariate_hypergeometric(counts.counts, 5000).sum() == 5000
    assert fit_palette_counts(ColourCounts(), 4, 5, 0, None)[1] == 0


def test_cluster_colour_counts_merge_is_the_exact_count_of_both_blocks_in_any_order(small_run):
    """Counts of real pixels by (cluster, colour), merged block by block in any grouping and order, equal one count
    of all the pixels: sorted distinct keys, the same totals, int64 (the store's arrays byte for byte)."""
    import zarr

    from pipeline.quantize.palette import ClusterColourCounts

    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:60]
    owner = np.random.default_rng(0).integers(0, 5, len(images))
    pixels, clusters = images.reshape(-1, 3), np.repeat(owner, 32 * 32)
    whole = ClusterColourCounts.of_pixels(pixels, clusters)
    parts = [ClusterColourCounts.of_pixels(p, c) for p, c in zip(np.array_split(pixels, 7), np.array_split(clusters, 7))]
    folded = parts[0]
    for part in parts[1:]:
        folded = folded.merge(part)
    tree = (parts[6].merge(parts[0]).merge(parts[3])).merge(parts[1].merge(parts[5]).merge(parts[2].merge(parts[4])))
    for got in (folded, tree):
        assert got.keys.dtype == got.counts.dtype == np.int64
        np.testing.assert_array_equal(got.keys, whole.keys)
        np.testing.assert_array_equal(got.counts, whole.counts)
    empty = ClusterColourCounts()
    assert np.array_equal(empty.merge(whole).keys, whole.keys) and np.array_equal(whole.merge(empty).counts, whole.counts)
    again = whole.merge(whole)  # every key seen: only the counts add
    np.testing.assert_array_equal(again.keys, whole.keys)
    np.testing.assert_array_equal(again.counts, 2 * whole.counts)


def test_merging_spilled_runs_a_few_keys_at_a_time_is_the_exact_count_of_all_of_them(small_run):
    """Runs of real pixels' counts merged `chunk` keys of each at a time (chunks far smaller than the runs, and
    runs of very different lengths) give the one count of all the pixels, in consecutive sorted pieces."""
    import zarr

    from pipeline.quantize.palette import ClusterColourCounts, merge_sorted_runs

    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:60]
    owner = np.random.default_rng(1).integers(0, 5, len(images))
    pixels, clusters = images.reshape(-1, 3), np.repeat(owner, 32 * 32)
    whole = ClusterColourCounts.of_pixels(pixels, clusters)
    cuts = [0, 100, 5000, 5001, 30000, len(pixels)]
    runs = [ClusterColourCounts.of_pixels(pixels[a:b], clusters[a:b]) for a, b in zip(cuts, cuts[1:])]
    runs.append(ClusterColourCounts())  # a block with nothing selected
    for chunk in (1, 7, 1000, 10**6):
        pieces = list(merge_sorted_runs([(r.keys, r.counts) for r in runs], chunk))
        keys = np.concatenate([k for k, _ in pieces])
        assert all(len(k) for k, _ in pieces) and np.all(np.diff(keys) > 0)
        np.testing.assert_array_equal(keys, whole.keys)
        np.testing.assert_array_equal(np.concatenate([c for _, c in pieces]), whole.counts)
        assert keys.dtype == np.int64 and pieces[0][1].dtype == np.int64
    assert list(merge_sorted_runs([], 5)) == [] and list(merge_sorted_runs([(whole.keys[:0], whole.counts[:0])], 5)) == []


def test_the_merge_reads_at_most_chunk_keys_of_a_run_at_a_time(small_run):
    """The merge's memory is runs x chunk: every slice it asks a run for is at most `chunk` keys long."""
    import zarr

    from pipeline.quantize.palette import ClusterColourCounts, merge_sorted_runs

    class Recorded:
        def __init__(self, data):
            self.data, self.longest = data, 0

        def __len__(self):
            return len(self.data)

        def __getitem__(self, index):
            if isinstance(index, slice):
                self.longest = max(self.longest, len(range(*index.indices(len(self.data)))))
            return self.data[index]

    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:40]
    pixels = images.reshape(-1, 3)
    clusters = np.repeat(np.arange(len(images)) % 3, 32 * 32)
    runs = [ClusterColourCounts.of_pixels(p, c) for p, c in zip(np.array_split(pixels, 4), np.array_split(clusters, 4))]
    wrapped = [(Recorded(r.keys), Recorded(r.counts)) for r in runs]
    total = sum(len(k) for k, _ in merge_sorted_runs(wrapped, 100))
    assert total == len(ClusterColourCounts.of_pixels(pixels, clusters).keys)
    assert all(len(k) > 1000 for k, _ in wrapped) and max(max(k.longest, c.longest) for k, c in wrapped) == 100
