"""codec@name-q: the train set stored with a standard image codec at the bytes DCQ spends at q.

Reads  `codec:` + `base` (seed of the quality-search sample; executor: the shards map serially or on Dask); the
       prepared store (train/), and the DCQ store at q whose bytes on disk are the target. The codec and q come from
       dvc.yaml's matrix over `codec.codecs` x `codec.bits`.
Writes `OUT`, a codec store (`codec-v1`, pipeline/io/codec_store.py): every image's file bytes (JPEG: without the
       header all images share, stored once), labels, attrs with the codec, the quality found, the target and
       the resolved params. Each task encodes a shard of the prepared images into a file in `.OUT.work-PID-*/`;
       once their sizes add up to the store's layout, the files are copied in a shard at a time.

The quality is the highest whose store fits the target: searched on a seeded sample of `search_images` images
(bytes scaled to the set), then lowered one step at a time until the whole encoded set fits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import typer
import zarr

from pipeline.config import BaseParams, lineage, params_hash, require
from pipeline.errors import ParamsError
from pipeline.executor import map_shards
from pipeline.io.arrays import disk_bytes, open_group, take_rows, write_block_size
from pipeline.io.atomic import store_output
from pipeline.io.bitpack import check_bits
from pipeline.io.codec_store import write_codec
from pipeline.io.codecs import CODECS, QUALITY_RANGE, check_codec, encode_set, search_quality
from pipeline.io.dcq_store import DCQStore
from pipeline.io.verify import open_verified, seal
from pipeline.stages.common import PARAMS_OPTION, TIMING_OPTION, StageWiring, Timer, read_params, stage_command, summary

METADATA_BYTES = 4096  # the store's JSON and array overhead, reserved from the target before searching


@dataclass(frozen=True)
class CodecParams:
    codecs: list[str] = field(default_factory=lambda: ["jpeg", "webp"])  # read by dvc.yaml's matrix
    bits: list[int] = field(default_factory=lambda: [1, 2])             # read by dvc.yaml's matrix
    search_images: int = 500

    def __post_init__(self):
        for codec in self.codecs:
            require(codec in CODECS, f"codecs: {codec!r} is not one of {list(CODECS)}")
        for q in self.bits:
            check_bits(q)
        require(self.search_images >= 1, f"search_images={self.search_images} must be >= 1")


WIRING = StageWiring(CodecParams, "codec", matrix=("codecs", "bits"))


def encode_shard(codec: str, quality: int, prepared: str, scratch: str, start: int, stop: int
                 ) -> tuple[bytes, np.ndarray]:
    """One block of rows (an executor task): images [start, stop) encoded, their payloads into SCRATCH/START.
    Returns (the header they share, their payload sizes)."""
    header, payloads = encode_set(open_verified(prepared, checked=False)["train/images"][start:stop], codec, quality)
    (Path(scratch) / f"{start:012d}").write_bytes(b"".join(payloads))
    return header, np.fromiter(map(len, payloads), np.uint64, len(payloads))


def run(params: CodecParams, base: BaseParams, codec: str, bits: int, prepared: Path, match: Path, out: Path) -> dict:
    codec, bits = check_codec(codec, "codec --codec"), check_bits(bits, "codec --bits")
    reference = DCQStore(match)
    if reference.bits != bits:
        raise ParamsError(f"codec --bits={bits}, but {match} holds {reference.bits}-bit DCQ indices")
    target = disk_bytes(match)
    prep = open_group(prepared, "prepared store")
    images, labels = prep["train/images"], prep["train/labels"][:]
    n = images.shape[0]
    with Timer() as timer:
        sample = np.sort(np.random.default_rng(base.seed).choice(n, min(n, params.search_images), replace=False))
        sample_images = take_rows(images, sample)

        def estimate(quality: int) -> int:
            header, payloads = encode_set(sample_images, codec, quality)
            return len(header) + round(sum(map(len, payloads)) * n / len(sample))

        quality = search_quality(estimate, codec, target - METADATA_BYTES)
        if quality is None:
            raise ParamsError(f"{codec} at its lowest quality {QUALITY_RANGE[codec][0]} needs about "
                              f"{estimate(QUALITY_RANGE[codec][0]):,} bytes, over DCQ's {target:,} at q={bits}")
        used = lineage(prep.attrs["params"], base=base, codec=params) | {"run": {"codec": codec, "bits": bits}}
        attrs = {"codec": codec, "bits": bits, "target_bytes": target, "image_size": list(images.shape[1:3]),
                 "classes": prep.attrs["classes"], "params": used, "params_hash": params_hash(used),
                 "source": {"dataset": prep.attrs["source"], "root": prep.attrs["root"]}}
        with store_output(out) as tmp:
            while True:  # the whole store on disk, metadata included, must fit
                with tempfile.TemporaryDirectory(prefix=f".{out.name}.work-{os.getpid()}-", dir=out.parent) as scratch:
                    task = partial(encode_shard, codec, quality, str(prepared), scratch)
                    parts = map_shards(base, task, n, write_block_size(images), f"codec {codec} quality {quality}")
                    pieces = (path.read_bytes() for path in sorted(Path(scratch).iterdir()))
                    write_codec(zarr.open_group(str(tmp), mode="w"), parts, pieces, labels, attrs | {"quality": quality})
                seal(tmp)
                if disk_bytes(tmp) <= target:
                    break
                if quality == QUALITY_RANGE[codec][0]:
                    raise ParamsError(f"{codec} at quality {quality} stores {disk_bytes(tmp):,} bytes, over DCQ's "
                                      f"{target:,} at q={bits}")
                quality -= 1
                shutil.rmtree(tmp)
    stored = disk_bytes(out)
    summary("codec", n, "images", timer.seconds, codec=codec, bits=bits, quality=quality, bytes=stored, target=target)
    return {"codec": codec, "bits": bits, "quality": quality, "bytes": stored, "target": target}


def command(
    codec: str = typer.Option(..., help=f"codec: {' | '.join(CODECS)}"),
    bits: int = typer.Option(..., help="the DCQ bit depth whose bytes on disk to match"),
    prepared: Path = typer.Option(..., help="prepared Zarr store"),
    match: Path = typer.Option(..., help="DCQ store at that q (its bytes on disk are the target)"),
    out: Path = typer.Option(..., help="codec store to write"),
    params_file: Path = PARAMS_OPTION,
    timing: Path | None = TIMING_OPTION,
):
    """Store the train set with a standard codec at the quality that matches DCQ's bytes at q."""
    base, params = read_params(params_file, WIRING.section, WIRING.params)
    with stage_command(f"codec {codec}@{bits}", timing):
        run(params, base, codec, bits, prepared, match, out)
