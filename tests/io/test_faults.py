"""Fault injection on real stores of every format: a deleted chunk, a truncated shard, flipped bytes, a changed
array shape, crafted arrays re-sealed by hand, and every attr replaced by junk. Each case gives a clear StoreError
naming the store (on open, or at the latest when the data is read), or reads back exactly the original data;
never another exception, never a training record. `dcq verify` exits 2 with one line for every damaged store."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.errors import StoreError
from pipeline.io.formats import format_names, open_store
from pipeline.io.verify import seal, verify_store
from tests.conftest import BASE

FAULTS = ("delete_chunk", "truncate_shard", "flip_bytes", "change_shape",
          # layout and content attacks that a shard's own crc32c cannot see (the manifest's hashes do)
          "separator", "fill_value", "codecs", "rewritten_shard", "garbage_array_meta", "garbage_root_meta",
          "extra_array_attr", "swapped_classes")
JUNK = (None, -1, 0, "junk", [], [1, 2, 3], {"a": 1})


def read_all(path: Path):
    """Everything a consumer of the store reads: decoded images and labels, or the experts' snapshots."""
    from pipeline.distill.experts import ExpertStore
    from pipeline.io.synthetic_store import SyntheticStore
    from pipeline.io.train_sets import load_train_set

    store = open_store(path)
    fmt = store.attrs["format"]
    if fmt == "synthetic-v1":
        syn = SyntheticStore(path)
        return syn.images_u8().numpy(), syn.labels().numpy()
    if fmt == "expert-trajectories-v1":
        experts = ExpertStore(path)
        snaps = [experts.snapshot(e, s).numpy() for e in range(experts.num_experts) for s in range(experts.num_snapshots)]
        return np.stack(snaps), np.array(experts.norm.mean + experts.norm.std)
    train_set = load_train_set(path)
    return train_set.images.numpy(), train_set.labels.numpy()


def largest_data_file(store: Path) -> Path:
    files = [p for p in store.rglob("*") if p.is_file() and p.name != "zarr.json"]
    return max(files, key=lambda p: (p.stat().st_size, str(p)))


def damage(store: Path, fault: str) -> None:
    target = largest_data_file(store)
    if fault == "delete_chunk":
        target.unlink()
    elif fault == "truncate_shard":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif fault == "flip_bytes":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif fault == "rewritten_shard":  # a valid shard (its crc32c passes) with other content, as if copied in
        array_dir = _array_dir(target)
        name = array_dir.relative_to(store).as_posix()
        arr = zarr.open_group(str(store), mode="r+")[name]
        rows = min(arr.shape[0], arr.shards[0] if arr.shards else arr.chunks[0])
        block = arr[:rows]
        arr[:rows] = np.roll(block, 1, axis=0) if rows > 1 else (block + 1).astype(block.dtype)
    elif fault == "garbage_root_meta":
        (store / "zarr.json").write_text("{not json")
    elif fault == "swapped_classes":
        meta = json.loads((store / "zarr.json").read_text())
        classes = meta["attributes"].get("classes")
        if isinstance(classes, list) and len(classes) > 1:
            classes[0], classes[1] = classes[1], classes[0]
        else:
            meta["attributes"]["format_note"] = "changed"
        (store / "zarr.json").write_text(json.dumps(meta))
    else:  # the array's metadata edited in place
        meta_file = _array_dir(target) / "zarr.json"
        meta = json.loads(meta_file.read_text())
        if fault == "change_shape":  # one row fewer than the manifest
            meta["shape"][0] -= 1
        elif fault == "separator":  # zarr would look for chunks under other names and read fill values
            meta["chunk_key_encoding"] = {"name": "default", "configuration": {"separator": "."}}
        elif fault == "fill_value":
            meta["fill_value"] = 7
        elif fault == "codecs":  # the same bytes read through another chain
            meta["codecs"] = [{"name": "bytes", "configuration": {"endian": "big"}}]
        elif fault == "extra_array_attr":
            meta["attributes"]["note"] = "added"
        else:
            meta_file.write_text("[1, 2")
            return
        meta_file.write_text(json.dumps(meta))


def _array_dir(data_file: Path) -> Path:
    path = data_file.parent
    while not (path / "zarr.json").is_file():
        path = path.parent
    return path


@pytest.fixture
def copy_of(format_stores, tmp_path):
    def make(fmt: str) -> Path:
        out = tmp_path / f"{fmt}.zarr"
        shutil.copytree(format_stores[fmt], out)
        return out

    return make


@pytest.mark.parametrize("fmt", format_names())
def test_every_store_verifies_and_reads(fmt, format_stores):
    assert verify_store(format_stores[fmt])
    read_all(format_stores[fmt])


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("fmt", format_names())
def test_a_damaged_store_is_a_clear_error(fmt, fault, copy_of):
    store = copy_of(fmt)
    damage(store, fault)
    with pytest.raises(StoreError, match=str(store.name)):
        read_all(store)
    result = CliRunner().invoke(app, ["verify", str(store)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and store.name in lines[0], result.output


@pytest.mark.parametrize("fmt", format_names())
def test_every_attr_replaced_by_junk_is_an_error_or_changes_nothing(fmt, format_stores, copy_of):
    original = read_all(format_stores[fmt])
    attrs = dict(zarr.open_group(str(format_stores[fmt]), mode="r").attrs)
    outcomes = {}
    for key in sorted(k for k in attrs if k != "manifest"):
        for junk in JUNK:
            store = copy_of(fmt)
            zarr.open_group(str(store), mode="r+").attrs[key] = junk
            try:
                again = read_all(store)
            except StoreError as exc:
                assert store.name in str(exc) and "\n" not in str(exc), (key, junk, exc)
                outcomes[key] = "error"
            else:
                for a, b in zip(original, again):
                    np.testing.assert_array_equal(a, b, err_msg=f"{fmt}: attr {key}={junk!r} changed the data")
            shutil.rmtree(store)
    # the attrs that decide how bytes become images are always checked
    must = {"dcq-v1": {"bits", "image_size", "classes", "clusters", "num_images", "format"},
            "palette-per-image-v1": {"bits", "image_size", "classes", "num_images", "format"},
            "subset-v1": {"classes", "num_images", "format", "source_images"},
            "synthetic-v1": {"representation", "image_size", "classes", "num_images", "format"},
            "expert-trajectories-v1": {"param_spec", "normalization", "format"},
            "codec-v1": {"codec", "bits", "image_size", "classes", "num_images", "format"},
            "patch-vq-v1": {"code_bits", "patch", "bits", "image_size", "classes", "num_images", "format"},
            "dcq-context-v1": {"bits", "image_size", "classes", "num_images", "format", "neighbours",
                               "cluster_context", "block_images"},
            "luma-chroma-vq-v1": {"bits", "image_size", "classes", "num_images", "format", "luma_patch", "luma_bits",
                                  "chroma_factor", "chroma_patch", "chroma_bits"}}[fmt]
    assert must <= set(outcomes), sorted(must - set(outcomes))


def _reseal_with(store: Path, name: str, data: np.ndarray) -> None:
    from pipeline.io.arrays import create_small

    root = zarr.open_group(str(store), mode="r+")
    del root[name]
    create_small(root, name, data)
    seal(root)


@pytest.mark.parametrize("case", ["palettes_wrong_shape", "more_labels_than_indices", "bits_disagree",
                                  "cluster_out_of_range", "label_out_of_range"])
def test_a_crafted_dcq_store_with_a_valid_manifest_is_refused(case, copy_of):
    """A store re-sealed by hand (manifest consistent) is still checked against the format's own rules."""
    store = copy_of("dcq-v1")
    root = zarr.open_group(str(store), mode="r")
    palettes, labels, clusters = root["palettes"][:], root["labels"][:], root["clusters"][:]
    if case == "palettes_wrong_shape":
        _reseal_with(store, "palettes", palettes[:, :1])
    elif case == "more_labels_than_indices":
        _reseal_with(store, "labels", np.concatenate([labels, labels[:3]]))
    elif case == "bits_disagree":
        zarr.open_group(str(store), mode="r+").attrs["bits"] = 2
    elif case == "cluster_out_of_range":
        _reseal_with(store, "clusters", np.full_like(clusters, len(palettes)))
    else:
        _reseal_with(store, "labels", np.full_like(labels, 200))
    with pytest.raises(StoreError, match=store.name):
        read_all(store)


def test_a_store_without_a_manifest_is_refused(copy_of):
    store = copy_of("dcq-v1")
    root = zarr.open_group(str(store), mode="r+")
    del root.attrs["manifest"]
    with pytest.raises(StoreError, match="no manifest"):
        read_all(store)


def test_training_on_a_damaged_store_writes_no_record(small_run, copy_of, tmp_path):
    from pipeline.stages import train
    from pipeline.train.engine import Recipe

    store = copy_of("dcq-v1")
    damage(store, "flip_bytes")
    params = train.TrainParams(recipe=Recipe(epochs=1, batch_size=64, lr=0.05))
    record = tmp_path / "record.json"
    with pytest.raises(StoreError, match=store.name):
        train.run(params, BASE, "dcq", 1, "convnetd3", 0, store, small_run.prepared, tmp_path / "m.pt", record)
    assert not record.exists() and not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("fmt", format_names())
def test_a_shard_with_other_content_is_named_by_array_and_shard_as_it_is_read(fmt, copy_of):
    """A shard that passes its own crc32c but not the manifest's hash: refused when read, naming where it is."""
    store = copy_of(fmt)
    damage(store, "rewritten_shard")
    with pytest.raises(StoreError, match=rf"{store.name}: array '[\w/]+': (shard|chunk) [\d.c]+ differs from the "
                                         r"manifest \(damaged, or copied from another store\)"):
        read_all(store)


@pytest.mark.parametrize("fault", ["separator", "fill_value", "codecs", "extra_array_attr", "swapped_classes"])
def test_layout_and_attr_changes_fail_on_open_before_any_data_is_read(fault, copy_of):
    store = copy_of("dcq-v1")
    damage(store, fault)
    with pytest.raises(StoreError, match=rf"{store.name}: .*(differ from the manifest|dcq writes)"):
        open_store(store)


def _mutate(obj, rng, depth: int = 0) -> None:
    """Replace, delete or descend into one entry of a JSON object or list."""
    junk = [None, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}, True, 2**70]
    if isinstance(obj, dict) and obj:
        key = rng.choice(sorted(obj))
        if depth < 3 and isinstance(obj[key], (dict, list)) and rng.random() < 0.6:
            _mutate(obj[key], rng, depth + 1)
        elif rng.random() < 0.3:
            del obj[key]
        else:
            obj[key] = rng.choice(junk)
    elif isinstance(obj, list) and obj:
        i = rng.randrange(len(obj))
        if isinstance(obj[i], (dict, list)) and rng.random() < 0.6:
            _mutate(obj[i], rng, depth + 1)
        else:
            obj[i] = rng.choice(junk)


@pytest.mark.parametrize("fmt", ["dcq-v1", "codec-v1"])
def test_any_mutation_of_any_metadata_file_is_a_store_error(fmt, format_stores, copy_of):
    """Seeded random edits of every zarr.json (values replaced by junk, keys deleted, the file garbled): each read
    is a StoreError naming the store, never another exception and never other data."""
    import random

    rng = random.Random(0)
    metas = sorted(p.relative_to(format_stores[fmt]) for p in format_stores[fmt].rglob("zarr.json"))
    for trial in range(60):
        store = copy_of(fmt)
        target = store / rng.choice(metas)
        if trial % 5 == 0:
            target.write_text(rng.choice(["", "{", "[]", "null", "1", '"s"', '{"a":']))
        else:
            original = json.loads(target.read_text())
            meta = json.loads(target.read_text())
            while meta == original:  # a junk value may equal the one it replaces
                _mutate(meta, rng)
            target.write_text(json.dumps(meta))
        with pytest.raises(StoreError, match=store.name):
            read_all(store)
        result = CliRunner().invoke(app, ["verify", str(store)])
        assert result.exit_code == 2 and result.output.startswith("error: "), (trial, result.output)
        shutil.rmtree(store)
