"""The attention store: a Grad-CAM++ (or Grad-CAM, LayerCAM) map per train image for its true label, kept at the CAM
layer's resolution (`maps: cam-resolution`); `attention.image_size_maps` gives the image-size maps the palette
ranks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import zarr

from pipeline.config import BaseParams, lineage, require
from pipeline.device import resolve_runtime
from pipeline.executor import cached, file_stamp, map_shards
from pipeline.io.arrays import create_rows, finite, iter_blocks, open_group, open_rows, write_block_size
from pipeline.io.atomic import store_output
from pipeline.io.verify import open_verified
from pipeline.models.checkpoint import load_checkpoint
from pipeline.models.inputs import to_input
from pipeline.models.layers import get_module
from pipeline.quantize.attention import MAPS, LabelCAM
from pipeline.timing import Timer, summary


@dataclass(frozen=True)
class AttentionParams:
    # none: no attention (every pixel counts; the palette stage then ignores k_gra) - an ablation
    method: Literal["gradcam++", "gradcam", "layercam", "none"] = "gradcam++"
    layer: str = "layer4"  # 4x4 maps for the CIFAR-stem ResNet-18 at 32 px
    batch_size: int = 256

    def __post_init__(self):
        require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1")


def _cam(teacher: str, layer: str, method: str, device: torch.device) -> tuple[LabelCAM, object]:
    """The CAM and input normalization, made once per process."""
    model, norm, _ = load_checkpoint(Path(teacher))
    target = get_module(model, layer, "attention.layer")
    return LabelCAM(model.to(device).to(memory_format=torch.channels_last), target, method), norm


def attention_block(params: AttentionParams, base: BaseParams, prepared: str, teacher: str, out: str,
                    start: int, stop: int) -> int:
    """One shard of rows: the CAMs of images [start, stop) for their labels into OUT's `cams` (an executor task).
    Returns how many of them the teacher classifies correctly."""
    runtime = resolve_runtime(base.device, base.precision)
    cam, norm = cached(("attention", file_stamp(teacher), params.layer, params.method, str(runtime.device)),
                       lambda: _cam(teacher, params.layer, params.method, runtime.device))
    train = open_verified(prepared, checked=False)["train"]
    images, labels = train["images"], torch.from_numpy(train["labels"][start:stop])
    target = open_rows(out, "cams")
    maps, correct = np.empty((stop - start, *target.shape[1:]), np.float32), 0  # one array: no heap fragments
    for s in range(0, stop - start, params.batch_size):  # read a batch at a time: memory set by the batch
        x = to_input(torch.from_numpy(images[start + s:min(stop, start + s + params.batch_size)]).to(runtime.device),
                     norm)
        y = labels[s:s + len(x)]
        with runtime.autocast():
            batch_maps, logits = cam(x, y.to(runtime.device))
        maps[s:s + len(x)] = batch_maps.cpu().numpy()
        correct += int((logits.argmax(1).cpu() == y).sum())
    target[start:stop] = finite(maps, out, "cams", (start, stop))
    return correct


def write_attention(params: AttentionParams, base: BaseParams, prepared: Path, teacher: Path, out: Path) -> dict:
    runtime = resolve_runtime(base.device, base.precision)
    train = open_group(prepared, "prepared store")["train"]
    images = train["images"]
    model, _, ckpt = load_checkpoint(teacher)
    get_module(model, params.layer, "attention.layer")  # validated before any work
    n, h, w, _ = images.shape
    if params.method == "none":
        return write_uniform(params, base, ckpt, n, h, w, out)
    cam_h, cam_w = cam_resolution(model, params.layer, h, w)
    with Timer() as timer, store_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        cams = create_rows(root, "cams", (n, cam_h, cam_w), np.float32)
        task = partial(attention_block, params, base, str(prepared), str(teacher), str(tmp))
        correct = sum(map_shards(base, task, n, write_block_size(cams), f"attention {params.method}"))
        root.attrs.update({"params": lineage(ckpt.get("params"), base=base, attention=params),
                           "teacher_train_accuracy": 100.0 * correct / max(1, n), **_layout(h, w)})
    summary("attention", n, "images", timer.seconds, method=params.method, layer=params.layer,
            teacher_train_accuracy=f"{100.0 * correct / max(1, n):.1f}%", runtime=runtime.describe,
            executor=base.executor)
    return {"images": n, "seconds": timer.seconds}


def write_uniform(params: AttentionParams, base: BaseParams, ckpt: dict, n: int, h: int, w: int, out: Path) -> dict:
    """The no-attention ablation: the same map for every pixel of every image."""
    with Timer() as timer, store_output(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        cams = create_rows(root, "cams", (n, 1, 1), np.float32)
        for start, stop in iter_blocks(n, write_block_size(cams)):
            cams[start:stop] = np.ones((stop - start, 1, 1), np.float32)
        root.attrs.update({"params": lineage(ckpt.get("params"), base=base, attention=params), **_layout(h, w)})
    summary("attention", n, "images", timer.seconds, method="none (every pixel)")
    return {"images": n, "seconds": timer.seconds}



def _layout(h: int, w: int) -> dict:
    return {"maps": MAPS, "image_size": [h, w]}


def cam_resolution(model: torch.nn.Module, layer: str, h: int, w: int) -> tuple[int, int]:
    """(h, w) of the CAM layer's output for an h x w image (one forward pass of a blank image)."""
    seen = {}

    def note_shape(module, inputs, output):  # returns None: the output passes unchanged
        seen["shape"] = tuple(output.shape[-2:])

    handle = get_module(model, layer, "attention.layer").register_forward_hook(note_shape)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, h, w))
    handle.remove()
    return int(seen["shape"][0]), int(seen["shape"][1])
