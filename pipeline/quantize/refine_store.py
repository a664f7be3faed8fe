"""The refined palette store: the cluster palettes after Sobel edge-loss refinement (DCQ eq. 6)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zarr
from tqdm import tqdm

from pipeline import distributed
from pipeline.config import BaseParams, lineage, off_switch, params_hash, require
from pipeline.device import resolve_runtime
from pipeline.errors import StoreError
from pipeline.io.arrays import create_small, open_group, take_rows, write_json
from pipeline.io.atomic import store_output
from pipeline.io.bitpack import check_bits
from pipeline.quantize.color import lab_to_rgb_u8, rgb_to_lab
from pipeline.quantize.refine import STEP_PIXELS, evaluate, refine_palettes, total_images
from pipeline.timing import Timer, summary


@dataclass(frozen=True)
class RefineParams:
    enabled: bool = True
    steps: int = 100
    lr: float = 0.5  # Adam step size in LAB units
    weights: list[float] = (1.0, 1.0, 1.0)  # w_L, w_A, w_B
    images_per_cluster: int = 64
    fidelity_weight: float = off_switch(0.0)  # > 0: add this times the LAB colour MSE to the edge loss (ours, not the paper's)

    def __post_init__(self):
        require(self.steps >= 0, f"steps={self.steps} must be >= 0")
        require(self.lr > 0, f"lr={self.lr} must be > 0")
        require(len(self.weights) == 3 and all(w >= 0 for w in self.weights),
                f"weights={list(self.weights)} must be three non-negative numbers (L, A, B)")
        require(self.fidelity_weight >= 0, f"fidelity_weight={self.fidelity_weight} must be >= 0")
        require(self.images_per_cluster >= 1, f"images_per_cluster={self.images_per_cluster} must be >= 1")


def sample_cluster_images(images, assignments: np.ndarray, k: int, per_cluster: int, seed: int,
                          share: tuple[int, int] = (0, 1)):
    """(k, B, 3, H, W) LAB images, B images drawn per cluster (with replacement only when a cluster
    is smaller than B), and a (k,) bool mask of non-empty clusters. B is `per_cluster`, or the largest cluster's
    size when every cluster is smaller (one image per cluster: B = 1, not `per_cluster` copies of it). With `share`
    (rank, ranks) only that rank's contiguous part of each cluster's B draws is read and returned."""
    rng = np.random.default_rng(seed)
    per_cluster = min(per_cluster, int(np.bincount(assignments, minlength=k).max(initial=1)))
    rows = np.zeros((k, per_cluster), np.int64)
    active = np.zeros(k, bool)
    for c in range(k):
        members = np.flatnonzero(assignments == c)
        if len(members) == 0:
            continue
        active[c] = True
        rows[c] = rng.choice(members, per_cluster, replace=len(members) < per_cluster)
    rank, ranks = share
    rows = rows[:, per_cluster * rank // ranks:per_cluster * (rank + 1) // ranks]
    per_cluster = rows.shape[1]
    unique, inverse = np.unique(rows, return_inverse=True)
    block = take_rows(images, unique)
    _, h, w, _ = block.shape
    if k * per_cluster * h * w <= STEP_PIXELS:
        lab = rgb_to_lab(torch.from_numpy(block[inverse.reshape(-1)])).permute(0, 3, 1, 2)
        return lab.reshape(k, per_cluster, 3, h, w).contiguous(), torch.from_numpy(active)
    # converted a chunk of images at a time: rgb_to_lab's float temporaries are ~10 copies of its input
    lab = torch.empty(k * per_cluster, 3, h, w)
    order = inverse.reshape(-1)
    step = max(1, STEP_PIXELS // (h * w))
    for start in range(0, len(order), step):
        lab[start:start + step] = rgb_to_lab(torch.from_numpy(block[order[start:start + step]])).permute(0, 3, 1, 2)
    return lab.reshape(k, per_cluster, 3, h, w), torch.from_numpy(active)


def stored_lab(palettes_lab: torch.Tensor) -> torch.Tensor:
    """The palette as it will be stored (uint8 sRGB), back in LAB."""
    return rgb_to_lab(lab_to_rgb_u8(palettes_lab))


def write_refined(params: RefineParams, base: BaseParams, bits: int, prepared: Path, clusters: Path, palettes: Path,
        out: Path, metrics_out: Path) -> dict:
    """Refine the palettes of `palettes` and write them to `out`. Under torchrun each process holds and scores its share
    of every cluster's sampled images (refine.py), and rank 0 writes the same store."""
    bits = check_bits(bits, "refine --bits")
    world, runtime = distributed.setup(resolve_runtime(base.device, base.precision))
    images = open_group(prepared, "prepared store")["train/images"]
    assignments = open_group(clusters, "cluster store")["assignments"][:].astype(np.int64)
    pal_root = open_group(palettes, "palette store")
    if int(pal_root.attrs["bits"]) != bits:
        raise StoreError(f"{palettes} holds {pal_root.attrs['bits']}-bit palettes, refine was asked for {bits} bits")
    kmeans = torch.from_numpy(pal_root["palettes"][:])
    k = kmeans.shape[0]
    torch.manual_seed(base.seed)
    with Timer() as timer:
        imgs, active = sample_cluster_images(images, assignments, k, params.images_per_cluster, base.seed,
                                             (world.rank, world.size))
        imgs, kmeans_d = imgs.to(runtime.device), kmeans.to(runtime.device)
        weights = torch.tensor(params.weights, dtype=torch.float32)
        start = stored_lab(kmeans_d)
        if params.enabled and params.steps > 0:
            with tqdm(total=params.steps, desc=f"refine q={bits}", leave=False) as bar:
                refined, before, _ = refine_palettes(imgs, start, weights, params.steps, params.lr, active, bar.update,
                                                     params.fidelity_weight, world)
            refined = stored_lab(refined)
        else:
            refined = start
            before = evaluate(imgs, start, weights, fidelity_weight=params.fidelity_weight, world=world)
        after = evaluate(imgs, refined, weights, fidelity_weight=params.fidelity_weight, world=world)
        keep_kmeans = after >= before
        refined = torch.where(keep_kmeans[:, None, None], start, refined).cpu()
        after = torch.where(keep_kmeans, before, after).cpu()
        before = before.cpu()
    act = active.numpy()
    used = lineage(pal_root.attrs["params"], base=base, refine=params)
    # DVC metrics: flat numbers; per-cluster losses and the full params live in the Zarr store.
    metrics = {
        "bits": bits, "clusters": k, "enabled": params.enabled, "steps": params.steps,
        "edge_loss_before": round(float(before[act].mean()), 4), "edge_loss_after": round(float(after[act].mean()), 4),
        "clusters_improved": int((after < before)[act].sum()), "seconds": round(timer.seconds, 2),
        "params_hash": params_hash(used),
    }
    per_cluster = total_images(imgs, world)
    if world.main:
        with store_output(out) as tmp:
            root = zarr.open_group(str(tmp), mode="w")
            root.attrs.update({"bits": bits, "clusters": k, "color_space": "CIE LAB (D65)", "params": used})
            create_small(root, "palettes", refined.numpy().astype(np.float32))
            create_small(root, "loss_before", before.numpy().astype(np.float32))
            create_small(root, "loss_after", after.numpy().astype(np.float32))
        write_json(metrics_out, metrics)
    distributed.finish(world)
    summary("refine", int(act.sum()) * per_cluster, "images", timer.seconds, bits=bits,
            edge_loss=f"{metrics['edge_loss_before']:.3f}->{metrics['edge_loss_after']:.3f}",
            improved=f"{metrics['clusters_improved']}/{int(act.sum())}",
            **({} if world.size == 1 else {"rank": f"{world.rank}/{world.size}", "images_here": imgs.shape[1]}))
    return metrics
