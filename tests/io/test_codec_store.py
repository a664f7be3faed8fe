"""The codec store's writer on real CIFAR-10 images: blocks of payloads spill to a scratch file and land in the store
in order; blocks whose JPEG headers differ are refused, and the scratch file never outlives the call."""

import numpy as np
import pytest
import zarr

from pipeline.io.codec_store import write_codec
from pipeline.quantize import codecs

ATTRS = {"codec": "jpeg", "bits": 2, "image_size": [32, 32], "classes": [str(i) for i in range(10)]}


def real_images(small_run, n: int) -> tuple[np.ndarray, np.ndarray]:
    prep = zarr.open_group(str(small_run.prepared), mode="r")
    return prep["train/images"][:n], prep["train/labels"][:n]


def test_blocks_land_in_order_and_the_scratch_file_is_removed(small_run, tmp_path):
    images, labels = real_images(small_run, 30)
    blocks = [codecs.encode_set(images[i:i + 8], "jpeg", 40) for i in range(0, 30, 8)]
    spill = tmp_path / ".out.zarr.work-1"
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="w")
    write_codec(root, iter(blocks), labels, ATTRS | {"quality": 40}, spill)
    assert not spill.exists()
    header, payloads = codecs.encode_set(images, "jpeg", 40)
    offsets = root["offsets"][:]
    assert root["header"][:].tobytes() == header and root.attrs["num_images"] == 30
    assert [root["data"][offsets[i]:offsets[i + 1]].tobytes() for i in range(30)] == payloads


def test_blocks_with_different_jpeg_headers_are_refused(small_run, tmp_path):
    images, labels = real_images(small_run, 16)
    blocks = [codecs.encode_set(images[:8], "jpeg", 40), codecs.encode_set(images[8:], "jpeg", 41)]
    spill = tmp_path / ".out.zarr.work-1"
    with pytest.raises(ValueError, match="JPEG headers differ"):
        write_codec(zarr.open_group(str(tmp_path / "out.zarr"), mode="w"), iter(blocks), labels, ATTRS, spill)
    assert not spill.exists()
