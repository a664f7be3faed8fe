"""What a run record says about the store it trained on, beyond its bytes: read once from the store's attrs when the
run trains, so that the report needs only the record, whether or not the store is still on disk.

`train_set_info(path)` of a DCQ store (`dcq-v1`) gives `clusters` (how many shared palettes) and
`cluster_chromaticity` (pipeline/quantize/chromaticity.py); of one the ablate stage built, also `ablation` (the
variant's name) and `ablation_change` (its overrides, as text); of one built at a distillation budget, `ipc`,
`budget_bytes`, `accounted_bytes` (the arrays uncompressed, the IPC table's one rule) and `on_disk_bytes` (its zstd
chunks). Every other train set gives {}.
"""

from __future__ import annotations

from pathlib import Path

import zarr

from pipeline.io.arrays import array_bytes, uncompressed_bytes


def flat_change(overrides: dict, prefix: str = "") -> list[str]:
    """`{cluster: {k: 1}}` -> ["cluster.k=1"]."""
    out = []
    for key, value in overrides.items():
        name = f"{prefix}.{key}" if prefix else key
        out += flat_change(value, name) if isinstance(value, dict) else [f"{name}={value}"]
    return out


def train_set_info(path: str | Path) -> dict:
    if not (Path(path) / "zarr.json").is_file():
        return {}
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    if attrs.get("format") != "dcq-v1" or not isinstance(attrs.get("clusters"), int):
        return {}
    chroma = attrs.get("cluster_chromaticity")
    info: dict = {"clusters": int(attrs["clusters"])}
    if isinstance(chroma, dict):
        info["cluster_chromaticity"] = chroma
    ablation = attrs.get("ablation")
    if not ablation:
        return info
    info["ablation"] = ablation["name"]
    info["ablation_change"] = ", ".join(flat_change({k: v for k, v in ablation.items() if k != "name"})) or "none"
    if "ipc" in attrs:
        info |= {"ipc": int(attrs["ipc"]), "budget_bytes": int(attrs["budget_bytes"]),
                 "accounted_bytes": uncompressed_bytes(path), "on_disk_bytes": array_bytes(path)}
    return info
