"""The compressed-dataset formats (indices + palettes) and their reader.

A DCQ store (format `dcq-v1`) is a Zarr v3 group:
  indices   uint8 (N, ceil(H*W*q/8))  palette index of every pixel, bit-packed to q bits (row-major)
  clusters  uint8/16/32 (N,)          the cluster (= palette) of every image
  labels    uint8/16/32 (N,)          class label of every image
  palettes  uint8 (k, 2^q, 3)         one shared sRGB palette per cluster
  attrs     format, bits, clusters, image_size, num_images, classes, source, params, params_hash
A per-image-palette store (format `palette-per-image-v1`, the colour-quantization baselines) is the same
without `clusters`: `palettes` is (N, 2^q, 3), image i uses palette i, and attrs add `method`.

`DCQStore(path).decode(start, stop)` rebuilds uint8 RGB images; `.tensor(...)` gives a torch tensor;
`export_imagefolder` writes palette PNGs in ImageFolder layout for any other trainer.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.errors import StoreError
from pipeline.io.arrays import disk_bytes, iter_blocks, write_block_size
from pipeline.io.atomic import remove_stale_siblings
from pipeline.io.bitpack import packed_bytes, unpack
from pipeline.io.formats import open_format, register_format
from pipeline.io.verify import check, check_classes, check_image_size, parsing_attrs, reading

if TYPE_CHECKING:
    import torch

FORMAT = "dcq-v1"
PER_IMAGE_FORMAT = "palette-per-image-v1"
FORMATS = (FORMAT, PER_IMAGE_FORMAT)


def check_header(path: Path, attrs: dict) -> tuple[int, tuple[int, int], list[str]]:
    """bits, image_size and classes of an indexed store's attrs, each checked (a StoreError naming it)."""
    bits, size, classes = attrs.get("bits"), attrs.get("image_size"), attrs.get("classes")
    check(path, isinstance(bits, int) and 1 <= bits <= 8, f"attr bits={bits!r} must be an integer 1..8")
    return bits, check_image_size(path, size), check_classes(path, classes)


def smallest_uint(max_value: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


@register_format(*FORMATS)
class DCQStore:
    """A palette-indexed train set, read-only: a DCQ store (`dcq-v1`: one palette per cluster) or a per-image
    quantizer's (`palette-per-image-v1`: one palette per image). `decode(start, stop)` rebuilds uint8 RGB images
    (n, H, W, 3); `labels`, `classes`, `bits`, `image_size` and `summary()` describe it. Every read is checked
    against the store's manifest."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root, self.attrs = open_format(self.path, FORMATS, f"no DCQ store at {self.path}")
        self.per_image = self.attrs["format"] == PER_IMAGE_FORMAT
        self.method: str = str(self.attrs.get("method", "dcq"))
        self.bits, self.image_size, self.classes = check_header(self.path, self.attrs)
        with reading(self.path), parsing_attrs(self.path):
            self.palettes: np.ndarray = self.root["palettes"][:]
            self.labels: np.ndarray = self.root["labels"][:].astype(np.int64)
            self.clusters: np.ndarray = (np.arange(len(self.labels)) if self.per_image
                                         else self.root["clusters"][:].astype(np.int64))
        self._check_arrays()

    def _check_arrays(self) -> None:
        """Shapes and ranges that make every row decodable to the image and label it claims."""
        p, n, (h, w) = self.path, self.root["indices"].shape[0], self.image_size
        width = packed_bytes(h * w, self.bits)
        check(p, self.root["indices"].shape == (n, width), f"array 'indices' is {self.root['indices'].shape}; "
              f"bits={self.bits} at image_size {h}x{w} needs ({n}, {width})")
        check(p, len(self.labels) == n, f"array 'labels' has {len(self.labels)} rows, 'indices' {n}")
        check(p, self.attrs.get("num_images") == n, f"attr num_images={self.attrs.get('num_images')!r}, "
              f"the arrays hold {n} images")
        palettes = n if self.per_image else self.attrs.get("clusters")
        check(p, self.palettes.shape == (palettes, 2**self.bits, 3) and self.palettes.dtype == np.uint8,
              f"array 'palettes' is {self.palettes.shape} {self.palettes.dtype}, expected ({palettes}, "
              f"{2 ** self.bits}, 3) uint8 (bits={self.bits}, clusters={self.attrs.get('clusters')})")
        check(p, len(self.clusters) == n, f"array 'clusters' has {len(self.clusters)} rows, 'indices' {n}")
        check(p, n == 0 or int(self.clusters.max()) < len(self.palettes),
              f"array 'clusters' names palette {int(self.clusters.max(initial=0))}, the store has {len(self.palettes)}")
        check(p, n == 0 or int(self.labels.max()) < len(self.classes),
              f"array 'labels' holds label {int(self.labels.max(initial=0))}, attr classes has {len(self.classes)}")
        source = self.attrs.get("source_images")
        check(p, source is None or (isinstance(source, int) and source >= n),
              f"attr source_images={source!r} must be null or a count >= the {n} images held")

    def __len__(self) -> int:
        return len(self.labels)

    def indices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Unpacked palette indices, uint8 (n,H,W)."""
        stop = len(self) if stop is None else stop
        h, w = self.image_size
        with reading(self.path):
            packed = self.root["indices"][start:stop]
        return unpack(packed, self.bits, h * w).reshape(-1, h, w)

    def decode(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Reconstructed images uint8 (n,H,W,3)."""
        stop = len(self) if stop is None else stop
        idx = self.indices(start, stop)
        pal = self.palettes[self.clusters[start:stop]]  # (n,K,3)
        n, h, w = idx.shape
        flat = np.take_along_axis(pal, idx.reshape(n, h * w, 1).astype(np.int64), axis=1)
        return flat.reshape(n, h, w, 3)

    def iter_decoded(self, block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        block = block or write_block_size(self.root["indices"])
        for start, stop in iter_blocks(len(self), block):
            yield start, self.decode(start, stop)

    def tensor(self, start: int = 0, stop: int | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
        import torch

        return torch.from_numpy(self.decode(start, stop)).to(device)

    def describe(self) -> str:
        """What the store holds, in a few words (the report's storage table)."""
        if self.per_image:
            return f"{len(self):,} per-image palettes x {2 ** self.bits} colours"
        palettes = f"{self.attrs['clusters']} shared palettes x {2 ** self.bits} colours"
        if self.attrs.get("source_images"):  # DCQ of a coreset (ablate stage)
            return f"{len(self):,} of {self.attrs['source_images']:,} images, {palettes}"
        return palettes

    def summary(self) -> dict:
        n = len(self)
        h, w = self.image_size
        on_disk = disk_bytes(self.path)
        raw = n * h * w * 3
        return {
            "path": str(self.path), "bits": self.bits, "images": n, "method": self.method,
            "clusters": self.attrs.get("clusters"), "palettes": len(self.palettes),
            "colors_per_palette": 2**self.bits, "image_size": [h, w], "bytes_on_disk": on_disk,
            "bytes_raw_rgb24": raw, "measured_ratio": on_disk / raw if raw else None,
            "nominal_ratio": self.bits / 24, "source": self.attrs.get("source"),
            "params_hash": self.attrs.get("params_hash"),
        }


def safe_class_dir(name: object) -> str:
    """A class name as one path component, or a StoreError naming it (names come from a file we did not write)."""
    ok = (isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")
          and not Path(name).is_absolute() and not (len(name) > 1 and name[1] == ":"))
    if not ok:
        raise StoreError(f"class name {name!r} cannot be a folder name (empty, '.', '..', a separator or absolute)")
    return name


def _no_link_inside(out: Path, relative: Path) -> None:
    """Export writes only inside OUT: a symlink planted on the way to any file it writes is refused."""
    path = out
    for part in relative.parts:
        path = path / part
        if path.is_symlink():
            raise StoreError(f"export: {path} is a symbolic link; export never writes through links inside its "
                             "target (remove it, or choose an empty folder)")


def _move_in(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; across filesystems (a rename cannot), copy it beside `dst` first and rename that."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        part = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
        try:
            shutil.copyfile(src, part)
            os.replace(part, dst)
        finally:
            part.unlink(missing_ok=True)
        src.unlink()


def export_imagefolder(store: DCQStore, out: Path, overwrite: bool = False) -> int:
    """Write every image as an indexed (palette) PNG to out/<class>/<row>.png; returns the count.

    An existing non-empty `out` is refused unless `overwrite`; then only the files export writes are replaced
    and everything else in `out` stays. The PNGs are written to a hidden sibling first and moved in at the end
    (copied where `out` is on another filesystem); a symlink inside `out` on the way to a file it writes is refused
    before anything is written, and a failure (a full disk) leaves no partial output."""
    out = Path(out)
    names = [safe_class_dir(name) for name in store.classes]
    if out.exists() and not out.is_dir():
        raise StoreError(f"export: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise StoreError(f"export: {out} is not empty; choose an empty folder or pass --overwrite "
                         "(which replaces only the files export writes)")
    width = len(str(max(0, len(store) - 1)))
    labels = store.labels

    def targets():  # out/<class>/<row>.png, relative, made as needed (a list of ImageNet's paths would be ~0.6 GB)
        for row in range(len(store)):
            yield Path(names[labels[row]]) / f"{row:0{width}d}.png"

    if out.is_dir():
        for relative in (Path("dcq_store.json"), *(Path(n) for n in names), *targets()):
            _no_link_inside(out, relative)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        for name in names:
            (tmp / name).mkdir(parents=True)
        with tqdm(total=len(store), desc="export", unit="img", leave=False) as bar:
            for start, stop in iter_blocks(len(store), 4096):
                idx = store.indices(start, stop)
                for row, image_idx in enumerate(idx, start):
                    im = Image.fromarray(image_idx, mode="P")
                    im.putpalette(store.palettes[store.clusters[row]].reshape(-1).tolist())
                    im.save(tmp / names[labels[row]] / f"{row:0{width}d}.png", optimize=False)
                bar.update(stop - start)
        (tmp / "dcq_store.json").write_text(json.dumps(store.summary(), indent=2) + "\n")
        out.mkdir(exist_ok=True)
        for name in names:
            _no_link_inside(out, Path(name))
            (out / name).mkdir(exist_ok=True)
        for relative in (*targets(), Path("dcq_store.json")):
            _no_link_inside(out, relative)
            _move_in(tmp / relative, out / relative)
    except OSError as exc:  # PIL's writes name no file: the error names the export
        if exc.filename is None:
            exc.filename = str(out)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # ours: the PNGs not yet moved, or the empty folders
    return len(store)
