"""Image dataset sources: an ImageFolder tree `{train,test}/<class>/<image>` or a torchvision dataset
(CIFAR-10, CIFAR-100, SVHN). Everything comes out as uint8 RGB (H,W,3) and int labels."""

from __future__ import annotations

import contextlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from pipeline.errors import DatasetError

MIN_IMAGE_SIDE = 8  # ConvNetD3's three 2x poolings need 8 px; the smallest input any registered model accepts
# Below this many pixels an image decodes in one thread: 32x32 JPEGs decoded 2.1x faster in one thread than in two
# (the GIL), while a large image spends its time in the decoder, which releases the GIL.
THREADED_DECODE_PIXELS = 96 * 96
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (prepare.max_image_pixels)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
TORCHVISION_SOURCES = ("cifar10", "cifar100", "svhn")


@dataclass
class SplitListing:
    """One split of a source: either files on disk or in-memory arrays (torchvision)."""

    classes: list[str]
    labels: np.ndarray  # int64 (N,)
    files: list[str] | None = None  # file paths
    arrays: np.ndarray | None = None  # uint8 (N,H,W,3) for torchvision sources

    def __len__(self) -> int:
        return len(self.labels)


def _hidden(path: str | Path, what: str, skip: bool, skipped: list[str]) -> bool:
    """A name starting with a dot is read by no reader of ours: refused by name, or skipped with a warning when
    prepare.skip_non_images is true. Never dropped silently."""
    if not Path(path).name.startswith("."):
        return False
    if not skip:
        raise DatasetError(f"{path}: {what} whose name starts with a dot; rename it, remove it, or set "
                           "prepare.skip_non_images: true to skip such entries")
    skipped.append(str(path))
    return True


def list_imagefolder(root: Path, split: str, skip_non_images: bool = False) -> SplitListing:
    split_dir = Path(root) / split
    if not Path(root).is_dir():
        raise DatasetError(f"dataset folder not found: {root} (prepare.root)")
    if not split_dir.is_dir():
        raise DatasetError(f"dataset folder {root} has no '{split}/' split folder (expected {root}/{split}/<class>/<image>)")
    skipped: list[str] = []
    classes = []
    for entry in sorted(split_dir.iterdir()):
        if _hidden(entry, "a class folder" if entry.is_dir() else "a file", skip_non_images, skipped):
            continue
        if entry.is_dir():
            classes.append(entry.name)
        elif not skip_non_images:
            raise DatasetError(f"{entry}: a file beside the class folders (expected {split_dir}/<class>/<image>); "
                               "remove it or set prepare.skip_non_images: true")
        else:
            skipped.append(str(entry))
    if not classes:
        raise DatasetError(f"{split_dir} is empty: expected one folder per class")
    # Paths are kept as strings: a Path object costs ~0.5 kB, five times its string (ImageNet-1K: 1.28M files)
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(split_dir / name):
            dirnames[:] = sorted(d for d in dirnames
                                 if not _hidden(os.path.join(dirpath, d), "a folder", skip_non_images, skipped))
            for fn in sorted(filenames):
                path, suffix = os.path.join(dirpath, fn), os.path.splitext(fn)[1]
                if _hidden(path, "a file", skip_non_images, skipped):
                    continue
                if suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(path)
                elif not skip_non_images:
                    raise DatasetError(
                        f"{path}: not an image file (extension {suffix!r}); remove it or set "
                        "prepare.skip_non_images: true"
                    )
                else:
                    skipped.append(path)
        if not found:
            raise DatasetError(f"class folder {split_dir / name} holds no images")
        files.extend(found)
        labels.extend([label] * len(found))
    if skipped:
        warnings.warn(f"{split_dir}: skipped {len(skipped)} entries that are not images (prepare.skip_non_images), "
                      f"e.g. {skipped[0]}", stacklevel=2)
    return SplitListing(classes=classes, labels=np.asarray(labels, dtype=np.int64), files=files)


def _bomb(path: str | Path, pixels: str, max_pixels: int) -> DatasetError:
    return DatasetError(f"{path}: {pixels} pixels, over prepare.max_image_pixels={max_pixels} (a decompression bomb?); "
                        "raise the limit if the image is genuine")


@contextlib.contextmanager
def open_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """Image.open with the pixel limit checked from the header, before anything is decoded."""
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own check (at 2x) then agrees with ours
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise _bomb(path, "too many", max_pixels) from None  # Pillow's own check (at twice the limit) came first
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise _bomb(path, f"{w}x{h} = {w * h:,}", max_pixels)
        yield im


def check_readable(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Open the header only (cheap): catches non-image and truncated-header files and bombs early."""
    try:
        with open_image(path, max_pixels) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: cannot be read as an image ({exc})") from None


def check_file_sizes(files: dict[str, list[str]], size: tuple[int, int] | None, resize: str,
                     block: int = 4096, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(H, W) of the dataset from a header-only pass over every file (bad files fail here, before any decoding).
    With no `size` every image must share one; with `resize: reject` every image must be `size`. Files are checked
    `block` at a time (an executor's map holds a future per item: memory set by the block, not by N)."""
    seen: dict[tuple[int, int], str] = {}
    for split, paths in files.items():
        # One thread: reading a header is Python work under the GIL, and two threads took 2.9x as long as one
        # (20,000 CIFAR-10 files, 2 cores).
        with tqdm(total=len(paths), desc=f"check {split}", unit="file", leave=False) as bar:
            for start in range(0, len(paths), block):
                part = paths[start:start + block]
                _check_sizes(part, (check_readable(p, max_pixels) for p in part), seen, size, resize)
                bar.update(len(part))
    if size is None:
        (h, w), example = next(iter(seen.items()))
        check_min_size((h, w), example)
        return h, w
    return size


def check_min_size(size: tuple[int, int], example: str) -> None:
    if min(size) < MIN_IMAGE_SIDE:
        raise DatasetError(f"{example}: images are {size[1]}x{size[0]}, smaller than the {MIN_IMAGE_SIDE}x"
                           f"{MIN_IMAGE_SIDE} the models need; set prepare.image_size (and resize: resize) to enlarge")


def _check_sizes(paths, sizes, seen: dict, size: tuple[int, int] | None, resize: str) -> None:
    """Record each size first seen; fail on the first file that breaks the size rule."""
    for path, (w, h) in zip(paths, sizes):
        seen.setdefault((h, w), path)
        if size is None and len(seen) > 1:
            (h0, w0), first_path = next(iter(seen.items()))
            raise DatasetError(f"images differ in size: {first_path} is {w0}x{h0}, {path} is {w}x{h}; "
                               "set prepare.image_size (and resize: resize)")
        if resize == "reject" and size is not None and (h, w) != size:
            raise DatasetError(f"{path}: image is {w}x{h}, the dataset's size is {size[1]}x{size[0]}; set "
                               "prepare.resize: resize to scale the shorter side and centre-crop")


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(im: Image.Image, where: str = "image") -> Image.Image:
    """Greyscale, palette, CMYK and RGBA (alpha dropped, as torchvision does) become 3-channel RGB; 16-bit greyscale
    is scaled to 8 bits (Pillow's own convert would saturate it to white); float images are refused by name."""
    if im.mode in _SIXTEEN_BIT or im.mode == "I":
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DatasetError(f"{where}: 32-bit integer image with values {values.min()}..{values.max()}, outside "
                               "16 bits; convert it to 8 or 16 bits")
        im = Image.fromarray(((values + 128) // 257).astype(np.uint8), mode="L")
    elif im.mode == "F":
        raise DatasetError(f"{where}: 32-bit float image (mode F); convert it to 8 or 16 bits")
    if im.mode in ("P", "PA") and ("transparency" in im.info or im.mode == "PA"):
        im = im.convert("RGBA")
    try:
        return im.convert("RGB") if im.mode != "RGB" else im
    except ValueError as exc:
        raise DatasetError(f"{where}: cannot convert image mode {im.mode} to RGB ({exc})") from None


def height_width(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def fit_size(im: Image.Image, size: int | tuple[int, int], resize: str, where: str) -> Image.Image:
    """`resize: reject` refuses other sizes; `resize: resize` scales the image (bicubic) until it covers
    H x W and centre-crops to it (for a square size: the shorter side to `size`)."""
    (w, h), (th, tw) = im.size, height_width(size)
    if (w, h) == (tw, th):
        return im
    if resize == "reject":
        raise DatasetError(
            f"{where}: image is {w}x{h}, the dataset's size is {tw}x{th}; set prepare.resize: resize "
            "to scale the shorter side and centre-crop"
        )
    scale = max(th / h, tw / w)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return im.crop((left, top, left + tw, top + th))


def load_image(path: str | Path, size: int | tuple[int, int], resize: str,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    try:
        with open_image(path, max_pixels) as im:
            im.load()
            im = to_rgb(im, str(path))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(f"{path}: corrupt or unreadable image ({exc})") from None
    return np.asarray(fit_size(im, size, resize, str(path)), dtype=np.uint8)


def _torchvision_dataset(name: str, root: Path, split: str, download: bool):
    import torchvision.datasets as tvd

    def make(dl: bool):
        if name == "cifar10":
            return tvd.CIFAR10(str(root), train=split == "train", download=dl)
        if name == "cifar100":
            return tvd.CIFAR100(str(root), train=split == "train", download=dl)
        return tvd.SVHN(str(root), split=split, download=dl)

    try:
        return make(False)
    except (RuntimeError, FileNotFoundError):
        if not download:
            raise DatasetError(
                f"{name} {split} split not found under {root} and prepare.download is false; point prepare.root at a "
                "torchvision copy, or set prepare.source: imagefolder with a {train,test}/<class>/<image> tree"
            ) from None
    try:
        return make(True)
    except Exception as exc:  # network errors come as URLError, OSError, RuntimeError, ...
        raise DatasetError(
            f"could not download {name} to {root}: {type(exc).__name__}: {exc}. Without network access, put a copy "
            f"there (torchvision's format), or set prepare.source: imagefolder and prepare.root to a "
            "{train,test}/<class>/<image> tree such as ../shared/data/cifar10-jpeg"
        ) from None


def list_torchvision(name: str, root: Path, split: str, download: bool) -> SplitListing:
    ds = _torchvision_dataset(name, Path(root), split, download)
    if name == "svhn":
        images = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1))
        labels = np.asarray(ds.labels, dtype=np.int64)
        classes = [str(i) for i in range(10)]
    else:
        images = np.asarray(ds.data, dtype=np.uint8)
        labels = np.asarray(ds.targets, dtype=np.int64)
        classes = list(ds.classes)
    return SplitListing(classes=classes, labels=labels, arrays=images)


def decoder(listing: SplitListing, size: int | tuple[int, int], resize: str,
            max_pixels: int = DEFAULT_MAX_PIXELS) -> Callable[[np.ndarray], np.ndarray]:
    """A function from row indices to a uint8 (B,H,W,3) block."""
    if listing.arrays is not None:
        def from_arrays(rows: np.ndarray) -> np.ndarray:
            block = listing.arrays[rows]
            if block.shape[1:3] != height_width(size):
                return np.stack(
                    [np.asarray(fit_size(Image.fromarray(x), size, resize, f"image {r}")) for r, x in zip(rows, block)]
                )
            return block
        return from_arrays

    h, w = height_width(size)

    def from_files(rows: np.ndarray) -> np.ndarray:
        def load(r):
            return load_image(listing.files[r], size, resize, max_pixels)

        if h * w < THREADED_DECODE_PIXELS:  # small images: the per-file Python work dominates, one thread is fastest
            return np.stack([load(r) for r in rows])
        # PIL releases the GIL while decoding: for large images threads use every core, and map keeps the order.
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            return np.stack(list(pool.map(load, rows)))

    return from_files


# DVC runs `dvc exp run --temp` and queued experiments in a copy of the project at
# <project>/.dvc/tmp/exps/<name>, where a relative dataset path such as ../shared/... points elsewhere.
_EXPERIMENT_WORKSPACE = (".dvc", "tmp", "exps")


def project_root(cwd: Path | None = None) -> Path:
    """The project a stage runs for: the working directory, or, inside a DVC temporary experiment workspace,
    the project that workspace was copied from."""
    here = (cwd or Path.cwd()).resolve()
    if len(here.parts) > 4 and here.parts[-4:-1] == _EXPERIMENT_WORKSPACE:
        return here.parents[3]
    return here


def project_path(path: str | Path, cwd: Path | None = None) -> Path:
    """A params path (e.g. `prepare.root`) as an absolute path: relative paths are relative to the project root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root(cwd) / path
