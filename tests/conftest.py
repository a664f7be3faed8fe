"""Shared fixtures: small real CIFAR-10 subsets from the shared JPEG copy, and a small pipeline run."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pipeline.config import BaseParams
from pipeline.io.formats import format_names
from pipeline.stages import attention, cluster, colour_counts, encode, features, palette, prepare, refine, teacher
from pipeline.train.engine import Recipe

REPO = Path(__file__).resolve().parents[1]
CIFAR10 = Path(os.environ.get("DCQ_CIFAR10", REPO.parent / "shared" / "data" / "cifar10-jpeg"))

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def cifar10() -> Path:
    if not (CIFAR10 / "train").is_dir():
        pytest.fail(f"real CIFAR-10 (ImageFolder JPEG) not found at {CIFAR10}; set DCQ_CIFAR10 to its path")
    return CIFAR10


BASE = BaseParams(seed=0, device="cpu", precision="auto")
SMALL = {
    "prepare": prepare.PrepareParams(root=str(CIFAR10), train_per_class=16, test_per_class=8),
    "teacher": teacher.TeacherParams(recipe=Recipe(epochs=1, batch_size=64, lr=0.05)),
    "features": features.FeaturesParams(),
    "cluster": cluster.ClusterParams(k=4, iterations=10, n_init=1),
    "attention": attention.AttentionParams(batch_size=64),
    "palette": palette.PaletteParams(bits=(1, 2), iterations=10),
    "refine": refine.RefineParams(steps=15, images_per_cluster=8),
    "encode": encode.EncodeParams(batch_size=64),
}


@dataclass
class PipelineRun:
    root: Path
    prepared: Path
    teacher: Path
    features: Path
    clusters: Path
    attention: Path

    @property
    def colour_counts(self) -> Path:
        return self.root / "colour_counts.zarr"

    def palettes(self, q: int) -> Path:
        return self.root / "palettes" / f"q{q}.zarr"

    def refined(self, q: int) -> Path:
        return self.root / "refined" / f"q{q}.zarr"

    def dcq(self, q: int) -> Path:
        return self.root / "dcq" / f"q{q}.zarr"


def run_pipeline(root: Path, bits=(1, 2), teacher_checkpoint: Path | None = None, **overrides) -> PipelineRun:
    """Run every stage's pure `run` on a small real subset into `root`."""
    p = {name: replace(value, **overrides.get(name, {})) for name, value in SMALL.items()}
    r = PipelineRun(root, root / "prepared.zarr", root / "teacher" / "model.pt", root / "features.zarr",
                    root / "clusters.zarr", root / "attention.zarr")
    prepare.run(p["prepare"], BASE, r.prepared)
    if teacher_checkpoint is None:
        teacher.run(p["teacher"], BASE, r.prepared, r.teacher, root / "teacher" / "metrics.json")
    else:
        r.teacher = teacher_checkpoint
    features.run(p["features"], BASE, r.prepared, r.teacher, r.features)
    cluster.run(p["cluster"], BASE, r.features, r.clusters, r.prepared)
    attention.run(p["attention"], BASE, r.prepared, r.teacher, r.attention)
    colour_counts.run(p["palette"], BASE, r.prepared, r.clusters, r.attention, r.colour_counts)
    for q in bits:
        palette.run(p["palette"], BASE, q, r.colour_counts, r.palettes(q))
        refine.run(p["refine"], BASE, q, r.prepared, r.clusters, r.palettes(q), r.refined(q),
                   root / "refined" / f"q{q}.json")
    encode.run(p["encode"], BASE, list(bits), r.prepared, r.clusters, root / "refined", root / "dcq")
    return r


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, cifar10) -> PipelineRun:
    return run_pipeline(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def scores_store(small_run, tmp_path_factory) -> Path:
    """Pruning scores from a 3-epoch proxy trained on the small run's real images."""
    from pipeline.stages import scores

    out = tmp_path_factory.mktemp("scores") / "scores.zarr"
    params = scores.ScoresParams(recipe=Recipe(epochs=3, batch_size=32, lr=0.05), el2n_epochs=2)
    scores.run(params, BASE, small_run.prepared, out)
    return out


@pytest.fixture(scope="session")
def expert_store(small_run, tmp_path_factory) -> Path:
    """Two ConvNetD3 experts, 4 epochs each, on the small run's 160 real train images."""
    out = tmp_path_factory.mktemp("experts") / "experts.zarr"
    return write_format_store("expert-trajectories-v1", small_run, None, out)


def write_format_store(fmt: str, small_run: PipelineRun, expert_store: Path | None, out: Path) -> Path:
    """One real store of format `fmt` at `out`, written by the stage that writes that format from the small run's
    outputs (`expert_store`: the trajectories the distiller starts from). Returns the store's path."""
    from pipeline.distill.experts import ExpertRecipe
    from pipeline.stages import baseline, codec, context_code, distill, experts, luma_chroma, patch_vq, prune

    writers = {
        "codec-v1": lambda: codec.run(codec.CodecParams(search_images=64), BASE, "jpeg", 2, small_run.prepared,
                                      small_run.dcq(2), out),
        "dcq-context-v1": lambda: context_code.run(context_code.ContextCodeParams(block_images=64), small_run.dcq(2),
                                                   out),
        "dcq-v1": lambda: encode.run(SMALL["encode"], BASE, [1], small_run.prepared, small_run.clusters,
                                     small_run.root / "refined", out),
        "expert-trajectories-v1": lambda: experts.run(
            experts.ExpertsParams(num_experts=2, recipe=ExpertRecipe(epochs=4, batch_size=32, lr=0.01)), BASE,
            small_run.prepared, small_run.prepared, out),
        "patch-vq-v1": lambda: patch_vq.run(
            patch_vq.PatchVQParams(bits=(1,), patch={1: [4, 4]}, code_bits={1: 6}, sample_patches=2000, iterations=5),
            BASE, 1, small_run.prepared, out),
        "luma-chroma-vq-v1": lambda: luma_chroma.run(luma_chroma.LumaChromaParams(
            bits=(1,), points={1: {"luma_patch": [4, 4], "luma_bits": 5, "chroma_factor": 8, "chroma_patch": [2, 2],
                                   "chroma_bits": 4}}, sample_vectors=2000, iterations=5),
            BASE, 1, small_run.prepared, out),
        "palette-per-image-v1": lambda: baseline.run(baseline.BaselineParams(), BASE, "median_cut", 1,
                                                     small_run.prepared, out),
        "subset-v1": lambda: prune.run(prune.PruneParams(), BASE, "random", 2, small_run.prepared, None, out),
        "synthetic-v1": lambda: distill.run(distill.DistillParams(), BASE, "random", 1, small_run.prepared,
                                            expert_store, out),
    }
    writers[fmt]()
    return out / "q1.zarr" if fmt == "dcq-v1" else out


@pytest.fixture(scope="session")
def format_stores(small_run, scores_store, expert_store, tmp_path_factory) -> dict:
    """One real store of every registered format, written by the stage that writes it."""
    root = tmp_path_factory.mktemp("formats")
    made = {"dcq-v1": small_run.dcq(1), "expert-trajectories-v1": expert_store}  # session fixtures already
    return {fmt: made.get(fmt) or write_format_store(fmt, small_run, expert_store, root / f"{fmt}.zarr")
            for fmt in format_names()}


def _world_entry(rank: int, size: int, init_file: str, fn, args: tuple, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    from pipeline.distributed import World

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        torch.save(fn(World(rank, size), *args), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_in_world(fn, size: int, tmp_path: Path, *args) -> list:
    """`fn(world, *args)` in `size` spawned processes joined by gloo (a module-level function returning tensors,
    lists or dicts of them); every rank's result, loaded without unpickling objects."""
    import torch
    import torch.multiprocessing as mp

    tmp_path.mkdir(parents=True, exist_ok=True)
    mp.spawn(_world_entry, args=(size, str(tmp_path / "gloo-init"), fn, args, str(tmp_path)), nprocs=size, join=True)
    return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(size)]


@pytest.fixture
def small_filesystem(tmp_path):
    """A tmpfs of a given size mounted under tmp_path (another filesystem, and one that fills up); skips where this
    process may not mount (it needs root, as on our machines and in CI)."""
    import subprocess

    mounted = []

    def mount(name: str, size: str):
        point = tmp_path / name
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()[:100]}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def seal_attrs(store: Path, **attrs) -> None:
    """Set attrs of a store and seal it again: a crafted store whose manifest vouches for them, so that what is
    tested is the format's own rule, not the manifest."""
    import zarr

    from pipeline.io.verify import seal

    root = zarr.open_group(str(store), mode="r+")
    root.attrs.update(attrs)
    seal(root)


def unsealed(attrs) -> dict:
    """A store's attrs without its manifest (which hashes its files, so differs between layouts of the same data)."""
    return {k: v for k, v in dict(attrs).items() if k != "manifest"}
