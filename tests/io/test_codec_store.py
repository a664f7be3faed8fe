"""The codec store's writer on real CIFAR-10 images: blocks of payloads, delivered in pieces of any length, land in
the store in order; blocks whose JPEG headers differ, and bytes that do not add up to the sizes, are refused."""

import numpy as np
import pytest
import zarr

from pipeline.io import codecs
from pipeline.io.codec_store import write_codec

ATTRS = {"codec": "jpeg", "bits": 2, "image_size": [32, 32], "classes": [str(i) for i in range(10)]}


def real_images(small_run, n: int) -> tuple[np.ndarray, np.ndarray]:
    prep = zarr.open_group(str(small_run.prepared), mode="r")
    return prep["train/images"][:n], prep["train/labels"][:n]


def encoded_parts(images: np.ndarray, quality, block: int) -> tuple[list, bytes]:
    parts, payload = [], b""
    for start, q in zip(range(0, len(images), block), quality):
        header, payloads = codecs.encode_set(images[start:start + block], "jpeg", q)
        parts.append((header, np.array([len(p) for p in payloads], np.uint64)))
        payload += b"".join(payloads)
    return parts, payload


def test_blocks_land_in_order_whatever_the_pieces(small_run, tmp_path):
    images, labels = real_images(small_run, 30)
    parts, payload = encoded_parts(images, [40] * 4, 8)
    pieces = [payload[i:i + 1000] for i in range(0, len(payload), 1000)]  # not aligned with blocks or shards
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="w")
    write_codec(root, parts, iter(pieces), labels, ATTRS | {"quality": 40})
    header, payloads = codecs.encode_set(images, "jpeg", 40)
    offsets = root["offsets"][:]
    assert root["header"][:].tobytes() == header and root.attrs["num_images"] == 30
    assert [root["data"][offsets[i]:offsets[i + 1]].tobytes() for i in range(30)] == payloads


def test_different_jpeg_headers_or_bytes_that_do_not_add_up_are_refused(small_run, tmp_path):
    images, labels = real_images(small_run, 16)
    parts, payload = encoded_parts(images, [40, 41], 8)
    with pytest.raises(ValueError, match="JPEG headers differ"):
        write_codec(zarr.open_group(str(tmp_path / "a.zarr"), mode="w"), parts, iter([payload]), labels, ATTRS)
    parts, payload = encoded_parts(images, [40, 40], 8)
    with pytest.raises(ValueError, match="outrun"):
        write_codec(zarr.open_group(str(tmp_path / "b.zarr"), mode="w"), parts, iter([payload, b"x"]), labels, ATTRS)
