"""Sets stored within the storage of IPC full-colour images per class, opened in the form the distillation
protocol trains on: a synthetic store (distill stage), or a DCQ store of a coreset fitted to an IPC budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.distill.experts import ExpertStore
from pipeline.errors import StoreError
from pipeline.io.arrays import array_bytes
from pipeline.io.dcq_store import DCQStore
from pipeline.io.formats import open_store
from pipeline.io.synthetic_store import FORMAT as SYNTHETIC_FORMAT
from pipeline.io.synthetic_store import SyntheticStore
from pipeline.io.train_sets import load_train_set


@dataclass
class BudgetedSet:
    """A set stored within IPC full-colour images per class, in the form the protocol trains on."""
    method: str
    bits: int | None
    ipc: int
    budget_bytes: int
    stored_bytes: int
    representation: str
    classes: list[str]
    image_size: tuple[int, int]
    source_images: int
    num_images: int
    student_lr: float | None
    params: dict
    normalization: object | None   # the experts' normalisation a distilled set was made in; None: real pixels
    inputs: Callable[[ExpertStore], tuple]  # (experts) -> (x float (N,C,H,W) in the experts' input space, targets)
    source_bits: int | None = None  # a distilled set's source: the DCQ store's q it was distilled from; None: full colour


def open_budgeted(path: Path) -> BudgetedSet:
    """A synthetic store, or a DCQ store of a coreset fitted to an IPC budget; anything else is an error."""
    if not (path / "zarr.json").is_file():
        raise StoreError(f"no synthetic or DCQ store at {path}")
    store = open_store(path)
    attrs, fmt = store.attrs, store.attrs["format"]
    if isinstance(store, SyntheticStore):

        def inputs(experts: ExpertStore):
            if store.representation == "low_rank":
                return store.low_rank_images(), store.labels()
            return experts.preprocess(store.images_u8()), store.labels()

        return BudgetedSet(store.method, None, int(attrs["ipc"]), store.budget, store.stored_bytes,
                           store.representation, store.classes, tuple(attrs["image_size"]),
                           int(attrs["source_images"]), int(attrs["num_images"]), attrs.get("student_lr"),
                           dict(attrs.get("params", {})), attrs.get("normalization"), inputs,
                           _source_bits(attrs.get("source_bits"), path))
    if isinstance(store, DCQStore):
        if "ipc" not in attrs or "budget_bytes" not in attrs:
            raise StoreError(f"{path}: a {fmt} store without an IPC budget; only DCQ of a coreset fitted to one "
                             "(ablate variant with coreset.ipc) is compared at equal storage")
        train_set = load_train_set(path)

        def inputs(experts: ExpertStore):
            return experts.preprocess(train_set.images), train_set.labels

        return BudgetedSet(train_set.kind, train_set.bits, int(attrs["ipc"]), int(attrs["budget_bytes"]),
                           array_bytes(path), "dcq_indices", train_set.classes, train_set.image_size,
                           int(train_set.source_images or len(train_set.labels)), len(train_set.labels), None,
                           train_set.params, None, inputs)
    raise StoreError(f"{path}: format {fmt!r} is neither {SYNTHETIC_FORMAT!r} nor a DCQ store at an IPC budget")


def _source_bits(value, path: Path) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8:
        raise StoreError(f"{path}: source_bits={value!r} is not a bit depth in 1..8")
    return value
