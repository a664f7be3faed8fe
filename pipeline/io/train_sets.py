"""Every dataset variant the train stage can learn from, read into one shape.

`load_train_set(path)` recognises the store by its layout and attributes:
  prepared store (`train/images`, `train/labels`)  full colour, the reference upper bound (kind "full")
  `dcq-v1` store (pipeline/io/dcq_store.py)         decoded block by block from indices + palettes ("dcq"), or
                                                    kept packed and decoded per batch (`packed=True`)
  `palette-per-image-v1` store (same module)        a per-image quantizer baseline (kind = its method)
  `subset-v1` store (pipeline/io/subset_store.py)   a pruned coreset of full-colour images (kind = its method)
New variants (distilled sets, ...) add a reader here and nothing else. A run's `--method` must equal the
kind of the store it trains on.

`stored_bytes` is what it costs to keep the train set: the bytes on disk of everything needed to rebuild
it (images or indices + palettes + cluster ids + labels), measured, not nominal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import StoreError
from pipeline.io.arrays import disk_bytes, iter_blocks, open_group
from pipeline.io.formats import is_prepared_store, open_store
from pipeline.io.packed import PackedImages
from pipeline.io.streamed import StreamedImages
from pipeline.io.verify import check, check_classes, parsing_attrs, reading

# The formats a train set can be, by name: their readers are imported through the format registry when a store is
# opened, so a stage that only trains on full colour does not depend on any store reader's code.
INDEXED_FORMATS = ("dcq-v1", "palette-per-image-v1")  # palette indices: decoded per block, or kept packed
SUBSET_FORMAT = "subset-v1"
CODEC_FORMAT = "codec-v1"
PATCH_FORMAT = "patch-vq-v1"  # codes into a shared patch codebook: decoded per block
CONTEXT_FORMAT = "dcq-context-v1"  # DCQ with context-coded index maps: decoded per block
LUMA_CHROMA_FORMAT = "luma-chroma-vq-v1"  # luma and chroma codes into two shared codebooks: decoded per block
TRAIN_SET_FORMATS = (*INDEXED_FORMATS, SUBSET_FORMAT, CODEC_FORMAT, PATCH_FORMAT, CONTEXT_FORMAT, LUMA_CHROMA_FORMAT)


@dataclass
class TrainSet:
    path: Path
    kind: str                     # "full" | "dcq" | a baseline or pruning method name
    images: torch.Tensor | PackedImages | StreamedImages  # uint8 (N,H,W,3), exactly the pixels the store rebuilds
        # (packed: decoded per batch from indices + palettes, pipeline/io/packed.py; streamed: a full-colour set
        # read window by window as training reaches it, pipeline/io/streamed.py)
    labels: torch.Tensor          # int64 (N,)
    classes: list[str]
    bits: int | None              # colour-index bits per pixel (pruned sets: the bit depth whose storage they
                                  # match, q/24 of the images); None for full colour
    stored_bytes: int
    params: dict                  # the resolved params that made the store (its whole lineage)
    source_images: int | None = None  # coresets: size of the train set they were selected from
    set_images: int | None = None     # the store's image count when only a share of its rows is loaded (DDP)

    @property
    def num_images(self) -> int:
        """Images in the whole train set (all ranks' shares together)."""
        return self.set_images or len(self.labels)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def raw_bytes(self) -> int:
        """The dataset it stands for as plain 24-bit RGB: these images, or for a coreset the whole set it was
        selected from (so a 417-of-10,000 coreset is compared at 4.17% of the full set's storage)."""
        per_image = self.image_size[0] * self.image_size[1] * 3
        return (self.source_images or self.num_images) * per_image

    @property
    def compression_ratio(self) -> float:
        return self.stored_bytes / self.raw_bytes

    def check_matches(self, method: str, bits: int | None, test_size: tuple[int, int], test_classes: list[str],
                      test_prepare: dict | None) -> None:
        """Fail before training when the store is not the variant a run asked for, or does not fit its test set."""
        where = f"train set {self.path}"
        if self.kind != method:
            what = "full-colour" if self.kind == "full" else self.kind
            raise StoreError(f"{where} is a {what} store, but the run is method={method}")
        if self.bits != bits:
            raise StoreError(f"{where} holds {self.bits}-bit indices, but the run asks for bits={bits}")
        if self.image_size != test_size:
            raise StoreError(f"{where} has {self.image_size[0]}x{self.image_size[1]} images, the test set "
                             f"{test_size[0]}x{test_size[1]}")
        if self.classes != test_classes:
            raise StoreError(f"{where} has classes {self.classes}, the test set {test_classes}")
        made_from = self.params.get("prepare")
        if test_prepare is not None and made_from is not None and made_from != test_prepare:
            raise StoreError(f"{where} was made from another prepared dataset (prepare params {made_from}) than "
                             f"the test set ({test_prepare})")


def share(n: int, part: tuple[int, int]) -> tuple[int, int]:
    """Rows [start, stop) of n that part (rank, size) holds: contiguous, sizes differing by at most one."""
    rank, size = part
    return n * rank // size, n * (rank + 1) // size


def load_split(prepared: Path, split: str, part: tuple[int, int] = (0, 1), stream: bool = False
               ) -> tuple[torch.Tensor | StreamedImages, torch.Tensor, dict]:
    """(images uint8 (N,H,W,3), labels int64, store attrs) of one split of a prepared store; `part` (rank,
    size): only that data-parallel rank's share of the rows; `stream`: the images are read from the store as they
    are asked for (`StreamedImages`), only the labels are loaded."""
    root = open_group(prepared, "prepared store")
    if split not in root:
        raise StoreError(f"{prepared}: prepared store has no {split!r} split")
    group = root[split]
    with reading(prepared, "prepared store"):
        start, stop = share(group["labels"].shape[0], part)
        labels = group["labels"][start:stop].astype(np.int64)
        images = StreamedImages(group["images"], (start, stop), source=str(prepared)) if stream \
            else group["images"][start:stop]
    classes = root.attrs.get("classes")
    check(prepared, isinstance(classes, list) and len(classes) > 0, f"attr classes={classes!r} must list the classes")
    check(prepared, len(images.shape) == 4 and images.shape[3] == 3 and labels.shape == (len(images),),
          f"{split}/images is {images.shape}, {split}/labels {labels.shape}: expected (N, H, W, 3) and (N,)")
    check(prepared, len(labels) == 0 or int(labels.max()) < len(classes) and int(labels.min()) >= 0,
          f"{split}/labels holds label {int(labels.max(initial=0))}, attr classes has {len(classes)}")
    return images if stream else torch.from_numpy(images), torch.from_numpy(labels), dict(root.attrs)


def _load_decoded(store, packed: bool = False, part: tuple[int, int] = (0, 1)) -> TrainSet:
    """A store that rebuilds every image (palette indices or codec files), decoded block by block, or with
    `packed` (palette-indexed stores) kept as indices + palettes and decoded per batch."""
    path = store.path
    h, w = store.image_size
    first, last = share(len(store), part)
    if packed and store.attrs["format"] in INDEXED_FORMATS:
        images = PackedImages.of_store(store, (first, last))
    else:
        images = torch.empty((last - first, h, w, 3), dtype=torch.uint8)
        for start, stop in iter_blocks(last - first, 4096):
            images[start:stop] = torch.from_numpy(store.decode(first + start, first + stop))
    source = store.attrs.get("source_images")  # set when the indexed images are a coreset of a larger set
    return TrainSet(path, store.method, images, torch.from_numpy(store.labels[first:last]), store.classes,
                    store.bits, disk_bytes(path), dict(store.attrs.get("params", {})),
                    None if source is None else int(source), len(store))


def _load_subset(store, part: tuple[int, int] = (0, 1)) -> TrainSet:
    first, last = share(len(store.labels), part)
    return TrainSet(store.path, store.method, torch.from_numpy(store.images()[first:last]),
                    torch.from_numpy(store.labels[first:last]), store.classes, store.bits, store.stored_bytes,
                    dict(store.attrs.get("params", {})), int(store.attrs["source_images"]), len(store.labels))


def _load_prepared(path: Path, part: tuple[int, int] = (0, 1), stream: bool = False) -> TrainSet:
    images, labels, attrs = load_split(path, "train", part, stream)
    total = open_group(path, "prepared store")["train/labels"].shape[0]
    return TrainSet(path, "full", images, labels, list(attrs["classes"]), None, disk_bytes(path / "train"),
                    dict(attrs.get("params", {})), None, total)



def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise StoreError(f"train set {path} does not exist")
    return path


class PreparedTrainSplit:
    """The train split of a prepared (full-colour) store, read like the other train-set stores."""

    def __init__(self, path: Path):
        self.path = path
        root = open_group(path, "prepared store")
        self.images = root["train/images"]
        self.classes = check_classes(path, root.attrs.get("classes"))
        with reading(path, "prepared store"):
            self.labels = root["train/labels"][:].astype(np.int64)

    def decode(self, start: int, stop: int) -> np.ndarray:
        with reading(self.path, "prepared store"):
            return self.images[start:stop]


def open_train_store(path: str | Path):
    """The store of the train set at `path` as a reader: `labels`, `classes` and `decode(start, stop)` -> uint8
    (n,H,W,3), whatever its format (for a Dataset that decodes as items are asked for)."""
    path = _existing(path)
    return PreparedTrainSplit(path) if is_prepared_store(path) else open_store(path, TRAIN_SET_FORMATS, "train-set")


def load_train_set(path: str | Path, packed: bool = False, part: tuple[int, int] = (0, 1),
                   stream: bool = False) -> TrainSet:
    """The train set at `path`; `packed`: a palette-indexed store's images stay packed (`PackedImages`); `part`
    (rank, size): only that data-parallel rank's share of the rows (bytes and ratio stay the whole set's);
    `stream`: a full-colour (prepared) set is read as training reaches its rows (`StreamedImages`)."""
    path = _existing(path)
    if is_prepared_store(path):
        return _load_prepared(path, part, stream)
    store = open_store(path, TRAIN_SET_FORMATS, "train-set")
    with parsing_attrs(path):
        if store.attrs["format"] == SUBSET_FORMAT:
            return _load_subset(store, part)
        return _load_decoded(store, packed, part)
