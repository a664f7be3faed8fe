"""The DCQ variants of the equal-bytes study (issue 17), switched in params, on real images: one cluster per image,
each image choosing its best shared palette, and a colour-fidelity term in refinement."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import zarr

from pipeline.config import to_dict
from pipeline.errors import ParamsError
from pipeline.io.dcq_store import DCQStore
from pipeline.quantize.color import rgb_to_lab
from pipeline.quantize.encode_store import best_palettes
from pipeline.quantize.refine import edge_loss, edge_maps, quantize, refine_loss, refine_palettes
from pipeline.stages import ablate, cluster, encode, refine
from tests.conftest import BASE, REPO, SMALL


def _lab_error(images_u8: np.ndarray, palettes_u8: np.ndarray) -> np.ndarray:
    """(N, k) summed squared LAB error of every image under every palette (nearest colour per pixel)."""
    lab = rgb_to_lab(torch.from_numpy(images_u8.reshape(len(images_u8), -1, 3)))
    pal = rgb_to_lab(torch.from_numpy(palettes_u8))
    d = ((lab[:, :, None, None, :] - pal[None, None]) ** 2).sum(-1)
    return d.amin(-1).sum(1).numpy()


def test_cluster_source_images_is_one_cluster_per_image(small_run, tmp_path):
    n = zarr.open_group(str(small_run.features), mode="r")["features"].shape[0]
    out = tmp_path / "images.zarr"
    cluster.run(replace(SMALL["cluster"], source="images", k=n), BASE, small_run.features, out)
    root = zarr.open_group(str(out), mode="r")
    assert (root["assignments"][:] == np.arange(n)).all()
    assert (root["sizes"][:] == 1).all()
    with pytest.raises(ParamsError, match=f"cluster.k=4 .* one cluster per train image .* set cluster.k to {n}"):
        cluster.run(replace(SMALL["cluster"], source="images"), BASE, small_run.features, tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


def test_per_image_variant_builds_a_palette_per_image_and_refines_each_on_itself(small_run, tmp_path):
    """k = N through the ablate chain: N palettes, each image its own cluster, refinement samples one image per
    cluster (not images_per_cluster copies of it)."""
    n = zarr.open_group(str(small_run.features), mode="r")["features"].shape[0]
    params = ablate.AblateParams(bits=(1,), variants=ablate.parse_variants(
        {"kN": {"cluster": {"source": "images", "k": n}}}, "dcq_variants.variants"))
    out = tmp_path / "kN-q1.zarr"
    ablate.run(params, BASE, SMALL, "kN", 1, small_run.prepared, small_run.teacher, None, out, "dcq_variants")
    store = DCQStore(out)
    assert store.attrs["clusters"] == n and store.palettes.shape == (n, 2, 3)
    assert (store.clusters == np.arange(n)).all()
    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:]
    shared = DCQStore(small_run.dcq(1)).decode()
    own = store.decode()
    # a palette fitted to each image reconstructs the set better than 4 shared ones
    lab = lambda x: rgb_to_lab(torch.from_numpy(x)).numpy()  # noqa: E731
    assert ((lab(own) - lab(images)) ** 2).mean() < ((lab(shared) - lab(images)) ** 2).mean()


def test_best_palette_picks_the_palette_with_the_least_error_and_costs_no_byte(small_run, tmp_path):
    encode.run(replace(SMALL["encode"], assign="best_palette"), BASE, [1], small_run.prepared, small_run.clusters,
               small_run.refined(1).parent, tmp_path)
    out = tmp_path / "q1.zarr"
    best, main = DCQStore(out), DCQStore(small_run.dcq(1))
    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:]
    errors = _lab_error(images, best.palettes)
    rows = np.arange(len(images))
    chosen = best.clusters.astype(np.int64)
    assert (chosen == errors.argmin(1)).all()
    assert (errors[rows, chosen] <= errors[rows, main.clusters.astype(np.int64)] + 1e-3).all()
    assert (chosen != main.clusters).any()  # on real images some image fits another cluster's palette better
    assert (best.palettes == main.palettes).all()
    assert best.attrs["params"]["encode"]["assign"] == "best_palette"
    assert {name: a.nbytes for name, a in best.root.arrays()} == {name: a.nbytes for name, a in main.root.arrays()}
    # and the choice is seeded by nothing: chunked over palettes, it is the same
    block = torch.from_numpy(images[:16])
    pal = rgb_to_lab(torch.from_numpy(best.palettes))
    assert torch.equal(best_palettes(block, pal), best_palettes(block, pal, max_elements=1))


def test_switches_off_leave_the_recorded_params_as_before():
    """A switch at its default is not written into an output's params, so adding it changed no earlier output."""
    assert "assign" not in to_dict(encode.EncodeParams())
    assert to_dict(encode.EncodeParams(assign="best_palette"))["assign"] == "best_palette"
    assert "fidelity_weight" not in to_dict(refine.RefineParams())
    assert to_dict(refine.RefineParams(fidelity_weight=2.0))["fidelity_weight"] == 2.0
    with pytest.raises(ParamsError, match="fidelity_weight=-1"):
        refine.RefineParams(fidelity_weight=-1)


def test_fidelity_term_adds_the_colour_error_and_pulls_palettes_towards_the_colours(small_run):
    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"][:8]
    lab = rgb_to_lab(torch.from_numpy(images)).permute(0, 3, 1, 2)[None].contiguous()  # (1,8,3,H,W)
    start = torch.tensor([[[30.0, 0.0, 0.0], [70.0, 10.0, 10.0]]])
    weights = torch.ones(3)
    edges = edge_maps(lab)
    quant = quantize(lab, start)
    assert torch.equal(refine_loss(lab, edges, quant, weights), edge_loss(edges, quant, weights))
    mse = ((lab - quant) ** 2).mean(dim=(1, 3, 4)).sum(1)
    assert torch.allclose(refine_loss(lab, edges, quant, weights, 3.0), edge_loss(edges, quant, weights) + 3 * mse)

    def colour_mse(pal):
        return float(((lab - quantize(lab, pal)) ** 2).mean())

    edge_only, _, _ = refine_palettes(lab, start, weights, steps=20, lr=0.5)
    with_fidelity, _, _ = refine_palettes(lab, start, weights, steps=20, lr=0.5, fidelity_weight=10.0)
    assert colour_mse(with_fidelity) < colour_mse(edge_only)


def test_repo_dcq_variants_parse_and_name_their_section(tmp_path):
    params = ablate.load_params(REPO / "params.yaml", "dcq_variants")
    defaults = ablate.read_defaults(REPO / "params.yaml")
    assert {"sweep_k1", "sweep_kN", "best_palette", "fidelity_refine"} <= set(params.variants)
    for name, variant in params.variants.items():
        ablate.resolve(defaults, variant, name)
    with pytest.raises(ParamsError, match="'nope' is not in dcq_variants.variants"):
        ablate.run(params, BASE, SMALL, "nope", 1, tmp_path, tmp_path, None, tmp_path / "o.zarr", "dcq_variants")
