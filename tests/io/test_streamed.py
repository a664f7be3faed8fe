"""Streamed full-colour train sets: the window-shuffled order is a permutation made of whole windows, the streamed
rows are the stored pixels while at most three windows are held, and training on the streamed set gives the
weights of the resident set under the same order (real CIFAR-10 prepared store)."""

import shutil
from dataclasses import replace

import pytest
import torch
import zarr

from pipeline.config import to_dict
from pipeline.device import resolve_runtime
from pipeline.errors import ParamsError, StoreError
from pipeline.io.streamed import StreamedImages, WindowShuffle, window_shuffle
from pipeline.io.train_sets import load_split, load_train_set
from pipeline.models.inputs import Normalization
from pipeline.models.registry import create_model
from pipeline.stages.train import TrainParams
from pipeline.train.engine import Recipe, train


@pytest.mark.parametrize("n", [160, 161, 15])
def test_window_shuffle_is_a_permutation_of_whole_windows(n):
    shuffle = WindowShuffle(window=48, block=16)
    order, windows = shuffle.order(n, torch.Generator().manual_seed(3))
    assert sorted(order.tolist()) == list(range(n))
    again, _ = shuffle.order(n, torch.Generator().manual_seed(3))
    assert torch.equal(order, again)
    at = 0
    for blocks in windows:  # each window's rows come as one run of the order, from exactly its blocks
        assert len(blocks) <= 3
        rows = order[at:at + sum(min(n, (b + 1) * 16) - b * 16 for b in blocks.tolist())]
        assert set((rows // 16).tolist()) == set(blocks.tolist())
        at += len(rows)
    assert at == n


def test_window_shuffle_rejects_a_window_smaller_than_a_block():
    with pytest.raises(ParamsError, match="stream_window=8 must be >= stream_block=16"):
        WindowShuffle(window=8, block=16)
    with pytest.raises(ParamsError, match="stream_window"):
        TrainParams(stream_window=100, stream_block=256)


def test_stream_params_are_recorded_only_when_on():
    assert "stream_window" not in to_dict(TrainParams())
    assert to_dict(TrainParams(stream_window=512))["stream_window"] == 512


def test_streamed_rows_are_the_stored_pixels_three_windows_at_most(small_run):
    resident, _, _ = load_split(small_run.prepared, "train")
    streamed = load_train_set(small_run.prepared, stream=True).images
    assert isinstance(streamed, StreamedImages) and streamed.shape == tuple(resident.shape)
    shuffle = WindowShuffle(window=48, block=16)
    order, windows = shuffle.order(len(resident), torch.Generator().manual_seed(0))
    streamed.follow(windows, shuffle.block)
    most_held = 0
    for start in range(0, len(order), 20):  # batches of 20 straddle window boundaries
        idx = order[start:start + 20]
        assert torch.equal(streamed[idx], resident[idx])
        most_held = max(most_held, streamed.held_windows)
    assert 2 <= most_held <= 3
    assert torch.equal(torch.cat(list(streamed.blocks(64))), resident)
    assert Normalization.from_images(streamed) == Normalization.from_images(resident.numpy())


def test_one_row_a_slice_and_a_move_read_like_a_tensor(small_run):
    resident, _, _ = load_split(small_run.prepared, "train")
    streamed = load_train_set(small_run.prepared, stream=True).images
    assert torch.equal(streamed[5], resident[5]) and torch.equal(streamed[-1], resident[-1])
    assert torch.equal(streamed[10:30], resident[10:30])
    assert streamed.to("cpu") is streamed  # already there: no second reader
    with pytest.raises(ParamsError, match="row index out of range"):
        streamed[len(resident)]
    assert window_shuffle(0, 256) is None and window_shuffle(512, 256) == WindowShuffle(512, 256)


def test_a_rank_streams_only_its_rows(small_run):
    resident, _, _ = load_split(small_run.prepared, "train", (1, 2))
    train_set = load_train_set(small_run.prepared, part=(1, 2), stream=True)
    assert torch.equal(train_set.images[torch.arange(len(resident))], resident)
    assert train_set.num_images == 2 * len(resident)


def test_training_on_the_streamed_set_gives_the_resident_sets_weights(small_run):
    resident_set = load_train_set(small_run.prepared)
    streamed_set = load_train_set(small_run.prepared, stream=True)
    runtime = resolve_runtime("cpu", "fp32")
    recipe = replace(Recipe(), epochs=2, batch_size=32, compile=False)
    norm = Normalization.from_images(resident_set.images.numpy())
    weights = []
    for images, shuffle in ((resident_set.images, WindowShuffle(48, 16)), (streamed_set.images, WindowShuffle(48, 16)),
                            (resident_set.images, None)):
        torch.manual_seed(0)
        model = create_model("convnetd3w64", 10, 32)
        train(model, images, resident_set.labels, recipe, norm, runtime, seed=0, shuffle=shuffle)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])  # the order is not the uniform one


def test_a_corrupt_chunk_is_named_when_its_window_is_read(small_run, tmp_path):
    copy = tmp_path / "prepared.zarr"
    shutil.copytree(small_run.prepared, copy)
    shard = next((copy / "train" / "images" / "c").rglob("*"))
    while shard.is_dir():
        shard = next(shard.iterdir())
    data = bytearray(shard.read_bytes())
    data[100:200] = bytes(100)
    shard.write_bytes(bytes(data))
    streamed = StreamedImages(zarr.open_array(str(copy / "train" / "images"), mode="r"), source=str(copy))
    index = ".".join(shard.relative_to(copy / "train" / "images" / "c").parts)
    with pytest.raises(StoreError, match=f"train set {copy}: array 'train/images': shard {index} is corrupt") as err:
        streamed[torch.arange(10)]
    assert "dcq verify" not in str(err.value)  # never the command the user just ran
