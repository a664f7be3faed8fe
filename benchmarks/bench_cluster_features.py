"""How chromatic the clusters are for each candidate clustering feature (the features layer and pooling).

For each candidate, runs the features and cluster stages' own code on the prepared train set with the given teacher,
and reads the cluster store's chromaticity: the share of the variance of each image's mean CIE LAB colour (a*, b*)
and L* that the clusters explain (1: pure colour groups, ~0: a random partition). Writes a JSON record.

    python benchmarks/bench_cluster_features.py --prepared data/prepared.zarr --teacher data/teacher/model.pt \\
        --layers features.0 features.1 features.2 pixels --out benchmarks/cluster_features_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import zarr

from pipeline.config import load_base, load_section
from pipeline.quantize.cluster_store import ClusterParams, write_clusters
from pipeline.quantize.feature_store import FeaturesParams, write_features

REPO = Path(__file__).resolve().parents[1]


def cpu_kind() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    kinds = sorted(set(re.findall(r"avx512[a-z_0-9]*", flags)))
    return "AVX-512 (" + " ".join(kinds) + ")" if kinds else ("AVX2" if "avx2" in flags else platform.machine())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--layers", nargs="+", default=["features.0", "features.1", "features.2", "pixels"])
    ap.add_argument("--poolings", nargs="+", default=["mean_std"])
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    base = load_base(args.params)
    features_params = load_section(args.params, "features", FeaturesParams)
    cluster_params = load_section(args.params, "cluster", ClusterParams)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for layer in args.layers:
            for pooling in args.poolings:
                fp = replace(features_params, layer=layer, pooling=pooling)
                feats, clusters = Path(work) / f"{layer}-{pooling}-f.zarr", Path(work) / f"{layer}-{pooling}-c.zarr"
                start = time.perf_counter()
                write_features(fp, base, args.prepared, args.teacher, feats)
                write_clusters(cluster_params, base, feats, clusters, args.prepared)
                seconds = time.perf_counter() - start
                attrs = dict(zarr.open_group(str(clusters), mode="r").attrs)
                chroma = attrs.get("cluster_chromaticity") or attrs.get("chromaticity")
                dim = int(zarr.open_group(str(feats), mode="r")["features"].shape[1])
                rows.append({"layer": layer, "pooling": pooling, "dim": dim, "k": cluster_params.k,
                             "chromaticity": chroma, "seconds": round(seconds, 1)})
                print(json.dumps(rows[-1]), flush=True)
    record = {"benchmark": "cluster_features", "cpu": cpu_kind(), "teacher": str(args.teacher),
              "prepared": str(args.prepared), "rows": rows}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"[bench_cluster_features] {len(rows)} candidates, written {args.out}")


if __name__ == "__main__":
    main()
