"""Bytes and fidelity of shared patch codebooks (pipeline/quantize/patch_vq.py) at several patch shapes and codebook
sizes, on a prepared store's train images, beside the codec and DCQ fidelity JSONs the pipeline wrote.

For each point PHxPW:B it fits the codebook exactly as the patch_vq stage does (a seeded sample of the LAB patches,
faiss K-means), codes every image, and reports the codes' bytes per image (packed, and after zstd as the store
keeps them), the codebook's bytes per image, and the mean per-image PSNR, SSIM and per-pixel CIEDE2000 of the decoded
images (pipeline/quantize/fidelity.py). It does not train: the equal-bytes study trains the chosen points.

    python benchmarks/bench_patch_vq.py --prepared data/prepared.zarr --points 4x4:8 4x4:10 4x2:9 4x4:12 2x2:8 \\
        --compare data/fidelity/codecs/jpeg-q1.json data/fidelity/codecs/jpeg-q2.json \\
        --json benchmarks/patch_vq_fidelity_main_job.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

import numcodecs
import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.io.patch_store import decode_codes, pack_codes  # noqa: E402
from pipeline.quantize.fidelity import store_fidelity  # noqa: E402
from pipeline.quantize.patch_vq import Assigner, fit_codebook  # noqa: E402
from pipeline.stages.patch_vq import BLOCK_IMAGES, sample_patches  # noqa: E402


def cpu_kind() -> str:
    flags = set(re.findall(r"avx512\w*", Path("/proc/cpuinfo").read_text())) if Path("/proc/cpuinfo").is_file() else set()
    return "AVX-512 (" + " ".join(sorted(flags)) + ")" if flags else f"no AVX-512 ({platform.machine()})"


def point(spec: str) -> tuple[tuple[int, int], int]:
    shape, bits = spec.split(":")
    ph, pw = shape.split("x")
    return (int(ph), int(pw)), int(bits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--points", nargs="+", required=True, help="PHxPW:CODE_BITS, e.g. 4x4:8")
    parser.add_argument("--sample-patches", type=int, default=200_000)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", nargs="*", type=Path, default=[], help="fidelity JSONs of the pipeline")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    root = zarr.open_group(str(args.prepared), mode="r")
    images = root["train/images"][:]
    n = len(images)
    rows = []
    for spec in args.points:
        patch, bits = point(spec)
        start = time.perf_counter()
        sample = sample_patches(root["train/images"], patch, args.sample_patches, args.seed)
        codebook = fit_codebook(sample, patch, bits, args.iterations, args.seed)
        assign = Assigner(codebook)
        codes = np.concatenate([assign.codes(images[a:a + BLOCK_IMAGES]) for a in range(0, n, BLOCK_IMAGES)])
        seconds = time.perf_counter() - start
        decoded = decode_codes(codes, codebook, images.shape[1:3])
        packed = pack_codes(codes, bits)
        zstd = len(numcodecs.Zstd(level=3).encode(packed.tobytes()))
        fidelity = store_fidelity(lambda a, b: images[a:b], lambda a, b: decoded[a:b], n).to_dict()
        row = {"point": spec, "patch": list(patch), "code_bits": bits, "codes_per_image": codes.shape[1],
               "packed_bytes_per_image": packed.shape[1], "zstd_bytes_per_image": round(zstd / n, 2),
               "codebook_bytes_per_image": round(codebook.size / n, 2),
               "total_bytes_per_image": round((zstd + codebook.size) / n, 2),
               "psnr_db": fidelity["psnr_db"], "ssim": fidelity["ssim"], "delta_e2000": fidelity["delta_e2000"],
               "fit_and_code_seconds": round(seconds, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    compared = []
    for path in args.compare:
        found = json.loads(path.read_text())
        compared.append({k: found.get(k) for k in ("store", "method", "bits", "psnr_db", "ssim", "delta_e2000")})
    result = {"benchmark": "patch_vq_fidelity", "cpu": cpu_kind(), "prepared": str(args.prepared), "images": n,
              "sample_patches": args.sample_patches, "iterations": args.iterations, "seed": args.seed,
              "rows": rows, "compared": compared}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
