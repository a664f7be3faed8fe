"""Row-chunked arrays: inner chunks of many images at every size, shards of whole chunks."""

import numpy as np
import zarr

from pipeline.io.arrays import create_rows, write_block_size


def test_inner_chunks_hold_several_images_at_large_sizes_and_are_unchanged_at_32px(tmp_path):
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    large = create_rows(root, "large", (500, 224, 224, 3), np.uint8)
    small = create_rows(root, "small", (50_000, 32, 32, 3), np.uint8)
    assert large.chunks[0] == 16 and large.shards[0] % 16 == 0 and large.shards[0] * 224 * 224 * 3 <= 17 * 2**20
    assert small.chunks[0] == 85 and small.shards[0] == 5440  # 256 kB chunks, ~16 MiB shards, as before
    assert write_block_size(large) == large.shards[0]
    tiny = create_rows(root, "tiny", (5, 224, 224, 3), np.uint8)
    assert tiny.chunks[0] == 5  # never more rows than the array has
