"""DCQ ablations switched in params, on real images."""

from dataclasses import replace

import numpy as np
import zarr

from pipeline.stages import attention, palette
from tests.conftest import BASE, SMALL


def test_attention_none_keeps_every_pixel_whatever_k_gra(small_run, tmp_path):
    flat = tmp_path / "attention-none.zarr"
    attention.run(replace(SMALL["attention"], method="none"), BASE, small_run.prepared, small_run.teacher, flat)
    cams = zarr.open_group(str(flat), mode="r")["cams"][:]
    assert (cams == 1).all()
    n, h, w = cams.shape
    params = replace(SMALL["palette"], k_gra=10.0)
    palette.run(params, BASE, 1, small_run.prepared, small_run.clusters, flat, tmp_path / "none.zarr")
    palette.run(params, BASE, 1, small_run.prepared, small_run.clusters, small_run.attention, tmp_path / "cam.zarr")
    pooled_all = zarr.open_group(str(tmp_path / "none.zarr"), mode="r")["pixels"][:].sum()
    pooled_top = zarr.open_group(str(tmp_path / "cam.zarr"), mode="r")["pixels"][:].sum()
    assert pooled_all == n * h * w
    assert pooled_top == n * round(0.10 * h * w)
    a = zarr.open_group(str(tmp_path / "none.zarr"), mode="r")["palettes"][:]
    b = zarr.open_group(str(tmp_path / "cam.zarr"), mode="r")["palettes"][:]
    assert not np.allclose(a, b)  # the attention-selected pixels give other palettes
