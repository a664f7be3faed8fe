"""Row-chunked arrays: inner chunks of many images at every size, shards of whole chunks."""

import numpy as np
import pytest
import zarr

from pipeline.io.arrays import create_rows, take_rows, write_block_size


def test_inner_chunks_hold_several_images_at_large_sizes_and_are_unchanged_at_32px(tmp_path):
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    large = create_rows(root, "large", (500, 224, 224, 3), np.uint8)
    small = create_rows(root, "small", (50_000, 32, 32, 3), np.uint8)
    assert large.chunks[0] == 16 and large.shards[0] % 16 == 0 and large.shards[0] * 224 * 224 * 3 <= 17 * 2**20
    assert small.chunks[0] == 85 and small.shards[0] == 5440  # 256 kB chunks, ~16 MiB shards, as before
    assert write_block_size(large) == large.shards[0]
    tiny = create_rows(root, "tiny", (5, 224, 224, 3), np.uint8)
    assert tiny.chunks[0] == 5  # never more rows than the array has


def test_a_task_block_equal_to_the_fill_value_is_written_and_the_store_verifies(tmp_path, cifar10):
    """A block write through a re-opened array (as every executor task does) keeps a shard of black images: zarr
    does not store an array's write config, so a plain re-open would skip it and the store would fail its check."""
    from PIL import Image

    from pipeline.io.arrays import open_group, open_rows
    from pipeline.io.verify import seal, verify_store

    real = np.stack([np.asarray(Image.open(p).convert("RGB"))
                     for p in sorted((cifar10 / "train" / "ship").iterdir())[:60]])
    path = tmp_path / "s.zarr"
    images = create_rows(zarr.open_group(str(path), mode="w"), "images", (5500, 32, 32, 3), np.uint8)
    black_rows = images.shards[0]  # 5,440: the whole first shard is fill value
    open_rows(path, "images")[:black_rows] = np.zeros((black_rows, 32, 32, 3), np.uint8)
    open_rows(path, "images")[black_rows:] = real
    seal(path)
    assert (path / "images" / "c" / "0" / "0" / "0" / "0").is_file()
    stored = open_group(path, "test store")["images"]
    assert not stored[:black_rows].any() and np.array_equal(stored[black_rows:], real)
    verify_store(path)


def test_take_rows_equals_numpy_indexing_on_real_images(tmp_path, cifar10):
    """Rows in one chunk, across chunk and shard edges, the first and the last: the values numpy's indexing gives."""
    from PIL import Image

    real = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted((cifar10 / "train" / "cat").iterdir())[:300]])
    arr = create_rows(zarr.open_group(str(tmp_path / "s.zarr"), mode="w"), "images", real.shape, np.uint8)
    arr[:] = real
    arr = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["images"]
    assert arr.chunks[0] == 85
    for rows in ([0], [299], [3, 4, 84, 85, 86, 170, 299], np.arange(300), np.arange(0, 300, 7), []):
        rows = np.asarray(rows, dtype=np.int64)
        taken = take_rows(arr, rows)
        assert taken.shape == (len(rows), 32, 32, 3) and np.array_equal(taken, real[rows])
    for bad in ([5, 5], [7, 3], [-1], [300]):
        with pytest.raises(ValueError, match="sorted distinct rows"):
            take_rows(arr, np.asarray(bad))


def test_a_float_array_with_nan_or_inf_is_never_written(tmp_path):
    import numpy as np
    import pytest
    import zarr

    from pipeline.errors import StoreError
    from pipeline.io.arrays import create_small, finite

    group = zarr.open_group(str(tmp_path / ".palettes.zarr.tmp-123"), mode="w")
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(StoreError, match=r"palettes.zarr: refusing to write 1 NaN or infinite values into array "
                                             r"'palettes'"):
            create_small(group, "palettes", np.array([[0.5, bad, 1.0]], np.float32))
    with pytest.raises(StoreError, match=r"features.zarr: .* array 'features' rows 10-12"):
        finite(np.full((2, 3), np.nan, np.float32), tmp_path / "features.zarr", "features", (10, 12))
    assert create_small(group, "ok", np.array([1.0, 2.0])).shape == (2,)
    assert create_small(group, "ints", np.array([1, 2])).shape == (2,)
