"""The colour-counts store (how many attention-selected pixels of each colour every cluster has, counted once per
k_gra and shared by every q) and the palette store: one LAB K-means palette of 2^q colours per cluster from them."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import zarr
from tqdm import tqdm

from pipeline.config import BaseParams, lineage, require
from pipeline.device import resolve_runtime
from pipeline.errors import StoreError
from pipeline.executor import map_shards, spans
from pipeline.io.arrays import CHECKSUMMED, EVERY_CHUNK, create_small, open_group, write_block_size
from pipeline.io.atomic import store_output
from pipeline.io.bitpack import check_bits
from pipeline.io.verify import open_verified
from pipeline.quantize.attention import check_maps, image_size_maps, top_pixels
from pipeline.quantize.palette import ClusterColourCounts, ColourCounts, fit_palette_counts, merge_sorted_runs
from pipeline.timing import Timer, summary


@dataclass(frozen=True)
class PaletteParams:
    bits: list[int] = (1, 2, 3, 4, 5, 6)  # the bit depths dvc.yaml runs this stage for
    k_gra: float = 50.0  # percent of each image's pixels kept, by Grad-CAM++ attention
    iterations: int = 25
    max_pixels_per_cluster: int | None = 1_000_000  # seeded subsample above this; null = all pixels

    def __post_init__(self):
        require(len(self.bits) >= 1, "bits must list at least one bit depth")
        for q in self.bits:
            check_bits(q, "bits")
        require(0 < self.k_gra <= 100, f"k_gra={self.k_gra} must be in (0, 100]")
        require(self.iterations >= 1, f"iterations={self.iterations} must be >= 1")
        require(self.max_pixels_per_cluster is None or self.max_pixels_per_cluster >= 1,
                f"max_pixels_per_cluster={self.max_pixels_per_cluster} must be >= 1 or null")


# Pixels ranked and keyed at a time inside a task (2,048 images at 32 px, 41 at 224 px): the ranking and key
# temporaries (~40 bytes per pixel) are set by this, not by the task's block (one image shard).
POOL_PIXELS = 1 << 21
# Spilled runs merged at once, and keys read per merge round over all of them: the merge holds about
# MERGE_KEYS x 50 bytes whatever the number of runs (more runs than FAN_IN are merged in passes, on disk).
FAN_IN = 64
MERGE_KEYS = 1 << 21
# Rows per chunk of the keys and counts arrays (8 MiB of int64): they are written as the merge yields them.
COUNT_CHUNK = 1 << 20


def pool_shard(k_gra: float, prepared: str, attention: str, clusters: str, start: int,
               stop: int) -> ClusterColourCounts:
    """One block of rows: the colour counts of its images' selected (top k_gra%) pixels, by cluster, counted
    POOL_PIXELS pixels at a time."""
    att_root = open_verified(attention, checked=False)
    images = open_verified(prepared, checked=False)["train/images"]
    assignments = open_verified(clusters, checked=False)["assignments"]
    batch = max(1, POOL_PIXELS // int(np.prod(images.shape[1:3])))
    total = ClusterColourCounts()
    for lo in range(start, stop, batch):
        hi = min(stop, lo + batch)
        cams = image_size_maps(att_root, Path(attention), lo, hi)
        block = images[lo:hi]
        owner = assignments[lo:hi].astype(np.int64)
        mask = top_pixels(torch.from_numpy(cams.astype(np.float32)), k_gra).numpy()
        del cams
        counts = mask.reshape(len(block), -1).sum(1)
        part = ClusterColourCounts.of_pixels(block[mask], np.repeat(owner, counts))  # pixels in image-major order
        total = total.merge(part)
    return total


def spill_shard(k_gra: float, prepared: str, attention: str, clusters: str, spill: str, start: int,
                stop: int) -> int:
    """An executor task: count one block (`pool_shard`) and save its sorted counts as a run in `spill` (a
    directory every worker sees) for the merge; returns the run's length."""
    part = pool_shard(k_gra, prepared, attention, clusters, start, stop)
    keys, counts = run_paths(Path(spill), f"{start:012d}")
    np.asarray(part.keys, "<i8").tofile(keys)
    np.asarray(part.counts, "<i8").tofile(counts)
    return len(part.keys)


def run_paths(spill: Path, name: str) -> tuple[Path, Path]:
    return spill / f"{name}.keys.i64", spill / f"{name}.counts.i64"


class SpilledRun:
    """A spilled run of little-endian int64, read a slice at a time from its file (a memory map would count every
    page the merge has read in the process's resident memory until the kernel drops it)."""

    def __init__(self, path: Path):
        self.path = path
        size = path.stat().st_size
        if size % 8:
            raise StoreError(f"{path}: a spilled run must hold whole int64 values, not {size} bytes")
        self.length = size // 8

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        one = isinstance(index, (int, np.integer))
        lo, hi, _ = (slice(index, index + 1) if one else index).indices(self.length)
        with open(self.path, "rb") as f:
            f.seek(8 * lo)
            data = np.fromfile(f, "<i8", max(0, hi - lo)).astype(np.int64)
        return data[0] if one else data


def merge_spilled(spill: Path, names: list[str]):
    """The merged (keys, counts) pieces of the named runs; with more runs than FAN_IN, groups of FAN_IN are first
    merged into new runs on disk (each pass reads and writes every key once), so memory stays MERGE_KEYS."""
    level = 0
    while len(names) > FAN_IN:
        merged = []
        for g in range(0, len(names), FAN_IN):
            group, name = names[g:g + FAN_IN], f"pass{level}-{g:012d}"
            keys_path, counts_path = run_paths(spill, name)
            with open(keys_path, "wb") as keys_file, open(counts_path, "wb") as counts_file:
                for keys, counts in merge_sorted_runs(open_runs(spill, group), max(1, MERGE_KEYS // len(group))):
                    np.asarray(keys, "<i8").tofile(keys_file)
                    np.asarray(counts, "<i8").tofile(counts_file)
            for old in group:
                for path in run_paths(spill, old):
                    path.unlink()
            merged.append(name)
        names, level = merged, level + 1
    return merge_sorted_runs(open_runs(spill, names), max(1, MERGE_KEYS // max(1, len(names))))


def open_runs(spill: Path, names: list[str]) -> list[tuple[SpilledRun, SpilledRun]]:
    return [tuple(SpilledRun(path) for path in run_paths(spill, name)) for name in names]


class _Appender:
    """Rows appended to a 1-D Zarr array whose length is not known in advance, written a whole chunk at a time."""

    def __init__(self, group: zarr.Group, name: str):
        self.array = group.create_array(name, shape=(0,), dtype=np.int64, chunks=(COUNT_CHUNK,), fill_value=0,
                                        compressors=CHECKSUMMED, config=EVERY_CHUNK)
        self.pending: list[np.ndarray] = []
        self.held = 0

    def add(self, rows: np.ndarray) -> None:
        self.pending.append(rows)
        self.held += len(rows)
        if self.held >= COUNT_CHUNK:
            self._write(final=False)

    def close(self) -> None:
        self._write(final=True)

    def _write(self, final: bool) -> None:
        data = np.concatenate(self.pending)
        keep = len(data) if final else len(data) // COUNT_CHUNK * COUNT_CHUNK
        start = self.array.shape[0]
        self.array.resize((start + keep,))
        self.array[start:start + keep] = data[:keep]
        self.pending, self.held = [data[keep:]], len(data) - keep


COUNTS_FORMAT = "colour-counts-v1"


def write_colour_counts(params: PaletteParams, base: BaseParams, prepared: Path, clusters: Path, attention: Path,
                        out: Path) -> dict:
    """Count the selected (top `params.k_gra`%) pixels of every image by (cluster, colour) into OUT: `keys` int64
    (M,) sorted cluster * 2^24 + 0xRRGGBB, `counts` int64 (M,). Each image shard is counted on the executor and
    spilled as a sorted run next to OUT; the runs are then merged a few keys of each at a time (in passes of FAN_IN
    runs) and written as they come, so no process holds all M pairs (they grow with the data: 6.4 M at 50k CIFAR
    images, 11.9 M at 200k). Only k_gra of `params` is used; every palette@q fits its palettes from this one
    store."""
    out = Path(out)
    images = open_group(prepared, "prepared store")["train/images"]
    att_root = open_group(attention, "attention store")
    check_maps(att_root, attention)
    cluster_root = open_group(clusters, "cluster store")
    n, assigned, mapped = images.shape[0], cluster_root["assignments"].shape[0], att_root["cams"].shape[0]
    if mapped != n or assigned != n:
        raise StoreError(f"stores disagree on the number of images: images {n}, cams {mapped}, "
                         f"cluster assignments {assigned}")
    k = int(cluster_root["centroids"].shape[0])
    # attention.method none: there is no ranking to cut at k_gra, so every pixel is kept
    k_gra = 100.0 if att_root.attrs["params"].get("attention", {}).get("method") == "none" else params.k_gra
    pixels = distinct = 0
    with Timer() as timer, store_output(out) as tmp, spill_dir(out) as spill:
        task = partial(spill_shard, k_gra, str(prepared), str(attention), str(clusters), str(spill))
        rows = write_block_size(images)
        blocks = spans(n, rows)
        map_shards(base, task, n, rows, "count pixels")
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update({"format": COUNTS_FORMAT, "clusters": k, "images": n, "k_gra": k_gra,
                           "params": lineage(cluster_root.attrs["params"], att_root.attrs["params"])})
        keys_out, counts_out = _Appender(root, "keys"), _Appender(root, "counts")
        for keys, counts in merge_spilled(spill, [f"{start:012d}" for start, _ in blocks]):
            keys_out.add(keys)
            counts_out.add(counts)
            pixels, distinct = pixels + int(counts.sum()), distinct + len(keys)
        keys_out.close()
        counts_out.close()
    summary("colour_counts", pixels, "pixels", timer.seconds, clusters=k, k_gra=k_gra, distinct=distinct,
            runs=len(blocks), executor=base.executor)
    return {"pixels": pixels, "distinct": distinct, "runs": len(blocks)}


@contextmanager
def spill_dir(out: Path):
    """`.NAME.work-PID` next to OUT for the spilled runs, removed afterwards (a killed run's is removed by the
    next run's `store_output(OUT)`, which clears stale siblings: pipeline/io/atomic.py)."""
    path = out.with_name(f".{out.name}.work-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class ClusterCountSlices:
    """Each cluster's `ColourCounts`, read from a colour-counts store when asked for, one cluster at a time: palette
    holds one cluster's distinct colours, not every cluster's (the store grows with the distinct (cluster, colour)
    pairs: 6.4 M at 50k CIFAR images, 11.9 M at 200k). Opening checks the keys block by block (sorted, distinct,
    cluster ids < k) and finds each cluster's rows and pixel total."""

    def __init__(self, root: zarr.Group, path: Path, k: int, block: int = 1 << 20):
        self.keys, self.counts, self.k = root["keys"], root["counts"], k
        if self.keys.shape != self.counts.shape or self.keys.ndim != 1:
            raise StoreError(f"{path}: keys {self.keys.shape} and counts {self.counts.shape} are not one row each")
        sizes, pixels, last = np.zeros(k, np.int64), np.zeros(k, np.int64), -1
        for start in range(0, self.keys.shape[0], block):
            keys = self.keys[start:start + block]
            if keys[0] <= last or np.any(np.diff(keys) <= 0) or keys[0] < 0 or keys[-1] >> 24 >= k:
                raise StoreError(f"{path}: keys are not sorted distinct (cluster, colour) codes of {k} clusters")
            last, cluster = keys[-1], keys >> 24
            sizes += np.bincount(cluster, minlength=k)
            counts = self.counts[start:start + block]
            # the keys are sorted, so each cluster's rows in this block are one run: exact int64 sums per run
            first = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1]])
            pixels[cluster[first]] += np.add.reduceat(counts, first)
        self.bounds = np.r_[0, np.cumsum(sizes)]
        self.pixels = pixels

    def __len__(self) -> int:
        return self.k

    def __iter__(self):
        return (self[c] for c in range(self.k))

    def __getitem__(self, c: int) -> ColourCounts:
        lo, hi = int(self.bounds[c]), int(self.bounds[c + 1])
        one = ColourCounts()
        one.codes = (self.keys[lo:hi] & 0xFFFFFF).astype(np.int32)
        one.counts = self.counts[lo:hi]
        return one


def read_colour_counts(path: Path, k_gra: float) -> tuple[ClusterCountSlices, dict]:
    """Every cluster's `ColourCounts` (read one cluster at a time) and the store's attributes; a clear error for
    another store or another k_gra than the palette was asked for."""
    root = open_group(path, "colour-counts store")
    attrs = dict(root.attrs)
    if attrs.get("format") != COUNTS_FORMAT:
        raise StoreError(f"{path}: format {attrs.get('format')!r} is not {COUNTS_FORMAT!r}")
    method = attrs["params"].get("attention", {}).get("method")
    if attrs["k_gra"] != (100.0 if method == "none" else k_gra):
        raise StoreError(f"{path}: counted with k_gra={attrs['k_gra']}, but palette.k_gra={k_gra}; rerun "
                         "`dvc repro colour_counts`")
    return ClusterCountSlices(root, Path(path), int(attrs["clusters"])), attrs


def write_palettes(params: PaletteParams, base: BaseParams, bits: int, colour_counts: Path, out: Path) -> dict:
    bits = check_bits(bits, "palette --bits")
    runtime = resolve_runtime(base.device, base.precision)
    pooled, attrs = read_colour_counts(colour_counts, params.k_gra)
    k, n_colors = int(attrs["clusters"]), 2**bits
    with Timer() as timer:
        palettes = np.zeros((k, n_colors, 3), np.float32)
        distinct = np.zeros(k, np.int64)
        for c in tqdm(range(k), desc=f"palette q={bits}", leave=False):
            palettes[c], distinct[c] = fit_palette_counts(pooled[c], n_colors, params.iterations, base.seed + c,
                                                          params.max_pixels_per_cluster, runtime.device.type == "cuda")
    with store_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs.update({"bits": bits, "clusters": k, "color_space": "CIE LAB (D65)",
                           "params": lineage(attrs["params"], base=base, palette=params)})
        create_small(root, "palettes", palettes)
        create_small(root, "distinct", distinct)
        create_small(root, "pixels", pooled.pixels)
    summary("palette", int(pooled.pixels.sum()), "pixels", timer.seconds, bits=bits, clusters=k,
            short_clusters=int((distinct < n_colors).sum()))
    return {"palettes": palettes, "distinct": distinct}
