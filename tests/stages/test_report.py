"""The report stage renders from a small set of run records over real small DCQ stores."""

import base64
import csv
import json
import re
import shutil

import pytest
import zarr
from PIL import Image

from pipeline.errors import StoreError
from pipeline.io.arrays import uncompressed_bytes
from pipeline.io.dcq_store import DCQStore
from pipeline.io.train_set_info import train_set_info
from pipeline.stages import report
from tests.conftest import BASE


def records_for(small_run):
    out = []
    for method, bits, accs in (("full", None, [40.0, 44.0]), ("dcq", 1, [20.0, 22.0]), ("dcq", 2, [30.0, 34.0])):
        path = small_run.prepared if bits is None else small_run.dcq(bits)
        nbytes = 470000 if bits is None else DCQStore(path).summary()["bytes_on_disk"]
        for seed, acc in enumerate(accs):
            out.append({"method": method, "bits": bits, "model": "convnetd3", "seed": seed, "test_accuracy": acc,
                        "compression_ratio": nbytes / 491520, "train_bytes": nbytes, "train_set": str(path),
                        "final_train_accuracy": 50.0, "epochs": 1, "train_seconds": 1.0,
                        "train_set_info": train_set_info(path)})  # as train.run writes it
    return out


def render(small_run, tmp_path, recs=None):
    runs = tmp_path / "runs"
    runs.mkdir(parents=True)
    for i, r in enumerate(recs if recs is not None else records_for(small_run)):
        folder = runs / r["_group"] if "_group" in r else runs  # a run group: the folder under runs
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.json").write_text(json.dumps({k: v for k, v in r.items() if k != "_group"}))
    timings = tmp_path / "timings"
    timings.mkdir()
    (timings / "teacher.json").write_text(json.dumps({"stage": "teacher", "seconds": 12.5}))
    (timings / "palette-q1.json").write_text(json.dumps({"stage": "palette@1", "seconds": 1.5}))
    out = tmp_path / "reports"
    names = {"records": "metrics.json", "summary": "summary.json", "data": "plot.csv", "plot": "plot.png",
             "grid": "grid.png", "methods": "methods.png", "md": "report.md", "html": "report.html"}
    paths = {key: out / name for key, name in names.items()}
    paths["sharing"] = out / "sharing.png"
    report.run(report.ReportParams(grid_images=4), BASE, runs, small_run.prepared, None, timings,
               small_run.root / "teacher" / "metrics.json", paths["records"], paths["summary"], paths["data"],
               paths["plot"], paths["grid"], paths["methods"], paths["md"], paths["html"],
               sharing_png_out=paths["sharing"])
    return paths


def test_report_renders_tables_plot_grid_and_self_contained_html(small_run, tmp_path):
    paths = render(small_run, tmp_path)
    recs = json.loads(paths["records"].read_text())["records"]
    assert isinstance(recs, list) and len(recs) == 6 and recs[0]["method"] == "full"
    md = paths["md"].read_text()
    assert "| full | - | 42.00 ± 2.83 | 0, 1 | - |" in md  # bold only marks the best at each q
    assert re.search(r"\| dcq \| 2 \| 32.00 ± 2.83 \| 0, 1 \| -10.00 \|", md)
    assert "8.33%" in md and "4.17%" in md  # nominal q/24 beside the measured ratio
    assert "![test accuracy against compression ratio](plot.png)" in md and "(grid.png)" in md
    assert "| teacher | 12.5 |" in md and "| palette@1 | 1.5 |" in md and "**14.0**" in md
    assert "k: 4" in md  # the stores' resolved params
    summary = json.loads(paths["summary"].read_text())
    assert summary == {"full": {"accuracy": 42.0, "bytes": 470000},
                       "dcq-q1": {"accuracy": 21.0, "bytes": summary["dcq-q1"]["bytes"]},
                       "dcq-q2": {"accuracy": 32.0, "bytes": summary["dcq-q2"]["bytes"]}, "written_by": "dcq"}
    rows = list(csv.DictReader(paths["data"].open()))
    assert [(r["method"], r["bits"], r["test_accuracy"]) for r in rows] == [
        ("full", "", "42.0"), ("dcq", "1", "21.0"), ("dcq", "2", "32.0")]
    html = paths["html"].read_text()
    assert "src=\"plot.png\"" not in html and html.count("data:image/png;base64,") == 2
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert base64.b64decode(embedded[0]) == paths["plot"].read_bytes()
    grid = Image.open(paths["grid"])
    assert grid.width > grid.height / 4 and grid.height > 300  # 4 rows of images, 1 + 2 * 2 columns


def test_report_is_deterministic(small_run, tmp_path):
    a = render(small_run, tmp_path / "a")
    b = render(small_run, tmp_path / "b")
    for key in ("records", "summary", "data", "plot", "grid", "html"):
        assert a[key].read_bytes() == b[key].read_bytes(), key


def test_report_without_dcq_runs_is_a_clear_error(small_run, tmp_path):
    with pytest.raises(StoreError, match="no dcq runs"):
        render(small_run, tmp_path, [r for r in records_for(small_run) if r["method"] == "full"])


def test_stale_runs_are_left_out_and_counted_by_reason(small_run, tmp_path, monkeypatch):
    """Staleness is the lineage's verdict (tests/report/test_lineage.py); the report leaves those runs out and
    lists each reason once, with its count."""
    from pipeline.report import lineage

    class TwoStale:
        def judge(self, path, record):
            stale = record["bits"] == 2 and record["seed"] == 1 or record["bits"] == 1 and record["seed"] == 0
            return lineage.Verdict(["train@dcq: train.recipe was {'epochs': 5}, is {'epochs': 4}"] if stale else [])

    monkeypatch.setattr(lineage.Lineage, "find", staticmethod(lambda runs: TwoStale()))
    paths = render(small_run, tmp_path)
    kept = json.loads(paths["records"].read_text())["records"]
    assert len(kept) == 4 and not any(r.get("stale_because") for r in kept)
    md = paths["md"].read_text()
    assert "Left out: 2 stale run record(s)" in md and "`dcq` bits 2 convnetd3 seed 1" not in md  # a count
    assert "| 2 | `train@dcq: train.recipe was {'epochs': 5}, is {'epochs': 4}` |" in md
    assert "Delete" not in md  # no advice that would delete git-tracked study records


def test_baselines_and_coresets_share_the_tables_at_matched_storage(small_run, tmp_path):
    """A per-image quantizer and a coreset beside DCQ: one matched-storage table, every store's bytes, and
    a grid of DCQ vs the quantizer with each image's own palette."""
    from pipeline.config import params_hash
    from pipeline.io.formats import store_params
    from pipeline.io.train_sets import load_train_set
    from pipeline.stages import baseline, prune

    median_cut = tmp_path / "stores" / "median_cut-q2.zarr"
    baseline.run(baseline.BaselineParams(), BASE, "median_cut", 2, small_run.prepared, median_cut)
    coreset = tmp_path / "stores" / "random-q1.zarr"
    prune.run(prune.PruneParams(), BASE, "random", 1, small_run.prepared, None, coreset)
    recs = records_for(small_run)
    for method, bits, path, accs in (("median_cut", 2, median_cut, [31.0, 33.0]), ("random", 1, coreset, [15.0, 17.0])):
        ts = load_train_set(path)
        for seed, acc in enumerate(accs):
            recs.append({"method": method, "bits": bits, "model": "convnetd3", "seed": seed, "test_accuracy": acc,
                         "compression_ratio": ts.compression_ratio, "train_bytes": ts.stored_bytes,
                         "train_images": len(ts.images), "train_set": str(path),
                         "train_set_hash": params_hash(store_params(path))})
    paths = render(small_run, tmp_path / "out", recs)
    md = paths["md"].read_text()
    assert "## At matched storage" in md
    # q=2 column: median cut (32.0) beats DCQ (32.0 tie -> both bold) ; q=1: DCQ 21 beats random 16
    assert re.search(r"\| dcq \| DCQ \(shared cluster palettes\) \| \*\*21.00 ± 1.41\*\* \(", md)
    assert re.search(r"\| random \| coreset \(pruning\) \| 16.00 ± 1.41 \(.*\) \| - \|", md)
    assert re.search(r"\| median_cut \| per-image quantizer \| - \| \*\*32.00 ± 1.41\*\*", md)
    assert "160 per-image palettes x 4 colours" in md and "7 of 160 images, full colour" in md
    assert "4 shared palettes x 2 colours" in md
    assert "## Training images at q = 2: DCQ and the per-image quantizers" in md
    grid = Image.open(paths["methods"])
    assert grid.width > grid.height / 4  # full colour + (dcq, median_cut) x (image, palette)


def test_ablations_get_their_own_table_and_leave_the_dcq_rows_alone(small_run, tmp_path):
    """Ablation runs (same method and bits as DCQ, another store) are told apart by their store, compared with
    the params.yaml DCQ in their own table, and only a coreset ablation joins the plot."""
    from pipeline.config import params_hash
    from pipeline.io.formats import store_params
    from pipeline.io.train_sets import load_train_set
    from pipeline.stages import ablate
    from tests.conftest import SMALL

    params = ablate.AblateParams(bits=(1,), variants=ablate.parse_variants(
        {"k2": {"cluster": {"k": 2}}, "half": {"coreset": {"method": "random", "keep": 0.5}}}, "test"))
    recs = records_for(small_run)
    for name, accs in (("k2", [25.0, 27.0]), ("half", [10.0, 12.0])):
        path = tmp_path / "stores" / f"{name}-q1.zarr"
        ablate.run(params, BASE, SMALL, name, 1, small_run.prepared, small_run.teacher, None, path)
        ts = load_train_set(path)
        for seed, acc in enumerate(accs):
            recs.append({"method": "dcq", "bits": 1, "model": "convnetd3", "seed": seed, "test_accuracy": acc,
                         "compression_ratio": ts.compression_ratio, "train_bytes": ts.stored_bytes,
                         "train_images": len(ts.images), "train_set": str(path),
                         "train_set_hash": params_hash(store_params(path)),
                         "train_set_info": train_set_info(path)})  # as train.run writes it
    paths = render(small_run, tmp_path / "out", recs)
    md = paths["md"].read_text()
    # the DCQ row of the matched-storage table still averages only the two params.yaml DCQ runs (20, 22)
    assert re.search(r"\| dcq \| DCQ \(shared cluster palettes\) \| \*\*21.00 ± 1.41\*\* \(", md)
    assert "## DCQ ablations" in md
    assert re.search(r"\| dcq \(params.yaml\) \| - \| 21.00 ± 1.41 \(", md)
    assert re.search(r"\| k2 \| cluster.k=2 \| 26.00 ± 1.41, Δ \+5.00 \(", md)
    assert re.search(r"\| half \| coreset.method=random, coreset.keep=0.5.* \| 11.00 ± 1.41, Δ -10.00 \(", md)
    assert "80 of 160 images, 4 shared palettes x 2 colours" in md
    series = {row["series"] for row in csv.DictReader(paths["data"].open())}
    assert "dcq [half] (convnetd3)" in series and not any("k2" in s for s in series)
    summary = json.loads(paths["summary"].read_text())  # the DVC metric: the main job's variants only
    assert summary["dcq-q1"]["accuracy"] == 21.0 and not any("k2" in key for key in summary)
    saved = json.loads(paths["records"].read_text())["records"]
    assert sorted({r.get("ablation") or "" for r in saved}) == ["", "half", "k2"]


def test_distilled_sets_get_an_ipc_table_apart_from_the_matched_storage_one(small_run, tmp_path):
    recs = records_for(small_run)
    for method, ipc, accs, nbytes, source in (
            ("random", 1, [14.0, 16.0], 30000, None), ("mtt", 1, [24.0, 26.0], 30730, None),
            ("random", 10, [26.0, 28.0], 307000, None), ("dm", 10, [30.0, 32.0], 307300, None),
            ("mtt", 1, [20.0, 22.0], 30730, 2), ("mtt", 1, [22.0, 24.0], 30730, 4)):  # distilled from DCQ stores
        for seed, acc in enumerate(accs):
            recs.append({"method": method, "ipc": ipc, "bits": None, "model": "convnetd3", "seed": seed,
                         "test_accuracy": acc, "compression_ratio": nbytes / 491520, "train_bytes": nbytes,
                         "budget_bytes": ipc * 10 * 3073, "train_images": 10 * ipc, "protocol": "distillation",
                         **({} if source is None else {"source_bits": source,
                                                       "_group": f"distill-mtt-ipc1-from-dcq-q{source}"})})
    paths = render(small_run, tmp_path / "out", recs)
    md = paths["md"].read_text()
    assert "## Dataset distillation at equal storage (images per class)" in md
    assert re.search(r"\| random \| real images \(baseline\) \| - \| 15.00 ± 1.41 \(30.00 kB, 98% of budget, "
                     r"10 samples\) \| 27.00 ± 1.41 \(", md)
    # one row per source, full colour first, then DCQ from the most to the fewest bits
    mtt = re.findall(r"\| mtt \| dataset distillation \| ([^|]+) \| ([^|]+) \| - \|", md)
    assert [(source, cell.split(" (")[0]) for source, cell in mtt] == [
        ("full colour", "25.00 ± 1.41, Δ +10.00"), ("DCQ q = 4", "23.00 ± 1.41, Δ +8.00"),
        ("DCQ q = 2", "21.00 ± 1.41, Δ +6.00")]
    assert re.search(r"\| dm \| dataset distillation \| full colour \| - \| 31.00 ± 1.41, Δ \+4.00 \(", md)
    stored = [r for r in json.loads(paths["records"].read_text())["records"] if r["method"] == "mtt"]
    assert sorted(r.get("source_bits") or 0 for r in stored) == [0, 0, 2, 2, 4, 4]
    # the matched-storage table keeps full colour as its own row and no IPC runs
    table = md.split("## At matched storage")[1].split("## Accuracy by method")[0]
    assert "| random |" not in table and "| mtt |" not in table
    summary = json.loads(paths["summary"].read_text())  # the DVC metric: the main job's variants only
    assert "full" in summary and not any("distill" in key for key in summary)
    ipc10 = [r for r in json.loads(paths["records"].read_text())["records"] if r["method"] == "random" and r.get("ipc") == 10]
    assert sum(r["test_accuracy"] for r in ipc10) / len(ipc10) == 27.0


def test_dcq_of_a_coreset_at_an_ipc_budget_joins_the_ipc_table(small_run, scores_store, expert_store, tmp_path):
    """The same DCQ store evaluated by evaluate_synthetic (the distillers' protocol) and trained by train_ablation
    (train.recipe) gives two rows of the IPC table, told apart by protocol; neither is an ablation row."""
    from pipeline.config import params_hash
    from pipeline.distill.evaluate import EvalRecipe
    from pipeline.io.arrays import array_bytes
    from pipeline.io.formats import store_params
    from pipeline.io.train_sets import load_train_set
    from pipeline.stages import ablate, evaluate_synthetic
    from tests.conftest import SMALL

    params = ablate.AblateParams(bits=(2,), variants=ablate.parse_variants(
        {"ipc1": {"coreset": {"method": "ccs", "ipc": 1}}}, "test"))
    path = tmp_path / "stores" / "ipc1-q2.zarr"
    ablate.run(params, BASE, SMALL, "ipc1", 2, small_run.prepared, small_run.teacher, scores_store, path)
    ts = load_train_set(path)
    recs = records_for(small_run)
    eval_params = evaluate_synthetic.EvaluateSyntheticParams(recipe=EvalRecipe(epochs=2, batch_size=64))
    for seed, acc in enumerate([18.0, 20.0]):
        recs.append({"method": "dcq", "bits": 2, "model": "convnetd3", "seed": seed, "test_accuracy": acc,
                     "compression_ratio": ts.compression_ratio, "train_bytes": ts.stored_bytes,
                     "train_images": len(ts.images), "train_set": str(path),
                     "train_set_hash": params_hash(store_params(path)), "train_set_info": train_set_info(path)})
        recs.append({"method": "random", "ipc": 1, "bits": None, "model": "convnetd3", "seed": seed,
                     "test_accuracy": acc - 5, "compression_ratio": 0.06, "train_bytes": 30730,
                     "budget_bytes": 30730, "train_images": 10, "protocol": "distillation"})
        evaluated = evaluate_synthetic.run(eval_params, BASE, seed, path, expert_store, small_run.prepared,
                                           tmp_path / f"eval{seed}.json")
        recs.append(evaluated | {"test_accuracy": acc + 2})
    md = render(small_run, tmp_path / "out", recs)["md"].read_text()
    table = md.split("## Dataset distillation at equal storage")[1].split("\n## ")[0]
    # one rule for every method: the arrays' bytes uncompressed (packed indices, labels, clusters, palettes);
    # the zstd chunks on disk are shown beside
    palettes = zarr.open_group(str(path), mode="r")["palettes"]
    used = 118 * (32 * 32 * 2 // 8 + 2) + palettes.shape[0] * 4 * 3  # q=2 indices, label, cluster; 4-colour palettes
    assert uncompressed_bytes(path) == used <= 30730
    on_disk = array_bytes(path)
    assert on_disk < used
    cell = rf"\({used / 1000:.2f} kB, {used / 30730:.0%} of budget, {on_disk / 30730:.0%} as zstd on disk, 118 samples\)"
    assert re.search(r"\| dcq \[ipc1\] \(train recipe\) \| DCQ of a coreset \(ablate\) \| - \| 19.00 ± 1.41, Δ \+5.00 "
                     + cell, table), table
    assert re.search(r"\| dcq \[ipc1\] \(distillation protocol\) \| DCQ of a coreset \(ablate\) \| - \| 21.00 ± 1.41, "
                     r"Δ \+7.00 " + cell, table), table
    assert "## DCQ ablations" not in md  # an IPC-budget variant is read against the distillers, not as an ablation
    # a run recorded before records carried the store's accounting knows the zstd bytes only, and says so
    # (what report/lineage.py recovers for it: the variant, not the bytes)
    older = [r | {"train_bytes": on_disk, "train_set_info": {k: v for k, v in r["train_set_info"].items()
                                                              if k in ("ablation", "ablation_change", "clusters")}}
             for r in recs if r.get("protocol") == "distillation" and r["method"] == "dcq"]
    recs = [r for r in recs if not (r.get("protocol") == "distillation" and r["method"] == "dcq")]
    md = render(small_run, tmp_path / "older", recs + older)["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| dcq [ipc1] (distillation protocol)"))
    assert f"({on_disk / 1000:.2f} kB, {on_disk / 30730:.0%} as zstd on disk, 118 samples)" in row, row
    assert "of budget" not in row


def test_evaluate_synthetic_trains_on_a_dcq_store_at_an_ipc_budget_only(small_run, scores_store, expert_store,
                                                                         tmp_path):
    """A DCQ store of a coreset fitted to IPC 1 is evaluated like a distilled set: its own decoded pixels, its
    measured array bytes against the budget, ratio over the whole train set; a DCQ store without a budget is
    refused by name."""
    from pipeline.distill.evaluate import EvalRecipe
    from pipeline.io.arrays import array_bytes
    from pipeline.report.records import validate
    from pipeline.stages import ablate, evaluate_synthetic
    from tests.conftest import SMALL

    params = ablate.AblateParams(bits=(1,), variants=ablate.parse_variants(
        {"ipc1": {"coreset": {"method": "ccs", "ipc": 1}}}, "test"))
    path = tmp_path / "ipc1-q1.zarr"
    ablate.run(params, BASE, SMALL, "ipc1", 1, small_run.prepared, small_run.teacher, scores_store, path)
    eval_params = evaluate_synthetic.EvaluateSyntheticParams(recipe=EvalRecipe(epochs=2, batch_size=64))
    rec = evaluate_synthetic.run(eval_params, BASE, 0, path, expert_store, small_run.prepared, tmp_path / "r.json")
    validate(rec, "record")
    assert rec["method"] == "dcq" and rec["bits"] == 1 and rec["ipc"] == 1 and rec["protocol"] == "distillation"
    assert rec["train_bytes"] == array_bytes(path) <= rec["budget_bytes"] == 10 * 3073
    assert rec["train_images"] == zarr.open_group(str(path), mode="r").attrs["num_images"] > 10
    assert rec["raw_bytes"] == 160 * 32 * 32 * 3 and rec["representation"] == "dcq_indices"
    again = evaluate_synthetic.run(eval_params, BASE, 0, path, expert_store, small_run.prepared, tmp_path / "r2.json")
    assert again["test_accuracy"] == rec["test_accuracy"]
    with pytest.raises(StoreError, match=r"q1.zarr: a dcq-v1 store without an IPC budget"):
        evaluate_synthetic.run(eval_params, BASE, 0, small_run.dcq(1), expert_store, small_run.prepared,
                               tmp_path / "r3.json")
    assert not (tmp_path / "r3.json").exists()


def test_equal_bytes_variants_get_differences_to_dcq_and_the_strongest_rival_and_a_sharing_figure(small_run, tmp_path):
    """DCQ variants of the equal-bytes study (ablate-built stores whose runs sit in runs/equal_bytes): compared with
    the params.yaml DCQ and the best other method at their q by paired intervals; the k sweep is drawn from the
    variants that change only the number of shared palettes, and they stay out of the ablations table."""
    from pipeline.config import params_hash
    from pipeline.io.formats import store_params
    from pipeline.io.train_sets import load_train_set
    from pipeline.stages import ablate, baseline
    from tests.conftest import SMALL

    n = int(zarr.open_group(str(small_run.prepared), mode="r")["train/labels"].shape[0])
    params = ablate.AblateParams(bits=(1,), variants=ablate.parse_variants(
        {"k1": {"cluster": {"k": 1}}, "kN": {"cluster": {"source": "images", "k": n}},
         "best": {"encode": {"assign": "best_palette"}}}, "dcq_variants.variants"))
    seeds = range(5)
    recs = [dict(r, seed=s, test_accuracy=r["test_accuracy"] + s) for r in records_for(small_run)
            if r["seed"] == 0 for s in seeds]
    def add(path, method, accs, group):
        ts = load_train_set(path)
        for seed, acc in zip(seeds, accs):
            recs.append({"method": method, "bits": 1, "model": "convnetd3", "seed": seed, "test_accuracy": acc,
                         "compression_ratio": ts.compression_ratio, "train_bytes": ts.stored_bytes,
                         "train_set": str(path), "train_set_hash": params_hash(store_params(path)), "_group": group,
                         "train_set_info": train_set_info(path)})
    # params.yaml DCQ at q=1: 20, 21, 22, 23, 24 (records_for's seed-0 run plus the seed)
    for name, accs in (("k1", [15, 16.5, 17, 18, 19.5]), ("kN", [30, 31.5, 32, 33.2, 34]),
                       ("best", [20.1, 21.2, 21.9, 23.1, 24.0])):
        path = tmp_path / "stores" / f"{name}-q1.zarr"
        ablate.run(params, BASE, SMALL, name, 1, small_run.prepared, small_run.teacher, None, path, "dcq_variants")
        add(path, "dcq", accs, "equal_bytes")
    rival = tmp_path / "stores" / "median_cut-q1.zarr"
    baseline.run(baseline.BaselineParams(), BASE, "median_cut", 1, small_run.prepared, rival)
    add(rival, "median_cut", [25, 26, 27, 28, 29], "median_cut-q1")
    paths = render(small_run, tmp_path / "out", recs)
    md = paths["md"].read_text()
    assert "## DCQ variants at equal bytes" in md and "## DCQ ablations" not in md
    row = next(line for line in md.splitlines() if line.startswith("| kN |"))
    assert "cluster.source=images" in row and "| 1 | convnetd3 |" in row
    assert "+10.14 [" in row and "**established**: higher" in row  # vs DCQ: 30-20, 31.5-21, ... mean +10.14
    assert "median_cut: +5.14 [" in row  # vs the strongest other method at q=1
    best = next(line for line in md.splitlines() if line.startswith("| best |"))
    assert "encode.assign=best_palette" in best and "not established (interval includes 0)" in best
    # choosing among the shared palettes stores the same arrays: only zstd's gain on them moves the bytes
    assert re.search(r"\| (0\.9[89]|1\.0[0-2])x \|", best)
    assert "![test accuracy against the number of shared palettes k](sharing.png)" in md
    with Image.open(paths["sharing"]) as img:
        assert img.size[0] > 500 and img.size[1] > 300
    panels = report.variants.sharing_panels(report.records.summarize(
        [r for r in json.loads(paths["records"].read_text())["records"]]), json.loads(paths["records"].read_text())["records"])
    assert [p["k"] for p in panels[0]["points"]] == [1, 4, n]  # k1, the params.yaml DCQ (k=4), kN; not `best`
    assert panels[0]["references"][0]["label"].startswith("median_cut")
    series = {row["series"] for row in csv.DictReader(paths["data"].open())}
    assert "dcq [kN] (convnetd3)" in series  # variants change the bytes: they join the matched-storage plot


def test_architecture_runs_get_their_own_table_and_stay_out_of_the_main_ones(small_run, tmp_path):
    """The architectures study (runs/architectures/...) trains other models with its own recipe: one row per model
    with the gap to full colour and the ranking of the train sets, the main job's model as the reference, and none
    of its runs in the matched-storage table, the DVC summary or the per-class matrices."""
    recs = records_for(small_run)
    for method, bits, accs in (("full", None, [50.0, 52.0]), ("dcq", 1, [30.0, 32.0]), ("dcq", 2, [41.0, 43.0])):
        path = small_run.prepared if bits is None else small_run.dcq(bits)
        for seed, acc in enumerate(accs):
            recs.append({"method": method, "bits": bits, "model": "resnet18", "seed": seed, "test_accuracy": acc,
                         "compression_ratio": 0.05, "train_bytes": 1000, "train_set": str(path), "epochs": 1,
                         "train_images": 160, "train_seconds": 8.0, "confusion": [[1]], "classes": ["a"],
                         "_group": f"architectures/{method}{bits or ''}"})
    paths = render(small_run, tmp_path / "out", recs)
    md = paths["md"].read_text()
    table = md.split("## Architectures: full colour and DCQ per model")[1].split("\n## ")[0]
    assert re.search(r"\| `resnet18` \| architectures.recipe \| 51.00 ± 1.41 \| 31.00 ± 1.41 \(-20.00\) \| "
                     r"42.00 ± 1.41 \(-9.00\) \| full > q2 > q1 \| 0, 1 \| 1 epoch\(s\), 20 img/s \|", table)
    assert re.search(r"\| `convnetd3` \| train.recipe \(main job\) \| 42.00 ± 2.83 \| 21.00 ± 1.41 \(-21.00\) \| "
                     r"32.00 ± 2.83 \(-10.00\) \| full > q2 > q1 \|", table)
    main = md.split("## At matched storage")[1].split("## Architectures")[0]
    assert "resnet18" not in main
    assert "| architectures | 6 runs |" in md
    assert json.loads(paths["summary"].read_text()).keys() == {"full", "dcq-q1", "dcq-q2", "written_by"}
    assert sum(r["model"] == "resnet18" for r in json.loads(paths["records"].read_text())["records"]) == 6


def test_second_regime_runs_get_their_own_table_beside_the_main_regime(small_run, tmp_path):
    """The second regime (runs/regime2/...) retrains the same train sets with the same seeds and a longer recipe:
    its runs are not duplicates of the main job's, stay out of the main tables, and get one row per train set with
    both regimes' accuracy, the paired difference to DCQ at the same q in each, and the ranking in each."""
    recs = records_for(small_run)
    # main regime at q=2: DCQ 30, 34; full 40, 44. Second regime: DCQ q=2 and full at seeds 0, 1, 2
    for method, bits, accs in (("full", None, [60.0, 62.0, 61.0]), ("dcq", 2, [45.0, 47.0, 46.0]),
                               ("dcq", 1, [35.0, 36.0, 38.0])):
        path = small_run.prepared if bits is None else small_run.dcq(bits)
        for seed, acc in enumerate(accs):
            recs.append({"method": method, "bits": bits, "model": "convnetd3", "seed": seed, "test_accuracy": acc,
                         "compression_ratio": 0.05, "train_bytes": 1000, "train_set": str(path), "epochs": 4,
                         "_group": f"regime2/{method}{bits or ''}"})
    paths = render(small_run, tmp_path / "out", recs)
    md = paths["md"].read_text()
    table = md.split("## Second regime: 4x the training steps")[1].split("\n## ")[0]
    assert re.search(r"\| full colour \| - \| convnetd3 \| 1 kB \| 42.00 ± 2.83 \(2 seeds, 1 epochs\) \| "
                     r"61.00 ± 1.00 \(3 seeds, 4 epochs\) \|", table)
    assert re.search(r"\| DCQ \| 2 \| convnetd3 \| .* \| 32.00 ± 2.83 \(2 seeds, 1 epochs\) \| "
                     r"46.00 ± 1.00 \(3 seeds, 4 epochs\) \|", table)
    assert "q = 2 (convnetd3): main regime full colour > DCQ; second regime full colour > DCQ: the ranking holds" \
        in table
    main = md.split("## At matched storage")[1].split("## Second regime")[0]
    assert "61.00" not in main and "46.00" not in main
    assert "| second regime | 9 runs |" in md
    assert json.loads(paths["summary"].read_text())["full"]["accuracy"] == 42.0


def test_paper_size_runs_get_their_own_table_and_leave_the_others_alone(small_run, tmp_path):
    """The paper-size regime (runs/regime3/...) trains every contender built from every train image: its own table
    beside the main regime, and none of its runs in the main tables, the second regime's or a study's count."""
    recs = records_for(small_run)
    for method, bits, accs in (("full", None, [70.0, 71.0, 72.0]), ("dcq", 2, [55.0, 56.0, 57.0]),
                               ("kmeans_lab", 2, [65.0, 66.0, 67.0])):
        path = small_run.prepared if bits is None else small_run.dcq(bits)
        for seed, acc in enumerate(accs):
            recs.append({"method": method, "bits": bits, "model": "convnetd3", "seed": seed, "test_accuracy": acc,
                         "compression_ratio": 0.05, "train_bytes": 5000, "train_set": str(path), "epochs": 1,
                         "_group": f"regime3/{method}{bits or ''}"})
    paths = render(small_run, tmp_path / "out", recs)
    md = paths["md"].read_text()
    table = md.split("## The paper's data size: every train image")[1].split("\n## ")[0]
    assert re.search(r"\| DCQ \| 2 \| convnetd3 \| 5 kB \| 32.00 ± 2.83 \(2 seeds, 1 epochs\) \| "
                     r"56.00 ± 1.00 \(3 seeds, 1 epochs\) \|", table)
    assert re.search(r"\| `kmeans_lab` \| 2 \| .* \| 66.00 ± 1.00 \(3 seeds, 1 epochs\) \| .* \| "
                     r"\+10.00 \[\+10.00, \+10.00\] \(not established \(fewer than 5 seeds\)\) \|", table)
    assert "paper size full colour > DCQ" in table
    assert "## Second regime" not in md
    main = md.split("## At matched storage")[1].split("## The paper's data size")[0]
    assert "56.00" not in main and "66.00" not in main
    assert "| paper-size regime | 9 runs |" in md and "| baselines | not run |" in md


def test_second_regime_difference_to_dcq_is_paired_and_needs_five_seeds(small_run, tmp_path):
    from pipeline.report import records
    from pipeline.report.sections import regimes

    recs = [{"method": m, "bits": 2, "model": "m", "seed": s, "test_accuracy": a + s, "ablation": None,
             "ipc": None, "compression_ratio": 0.1, "train_bytes": 1000, "epochs": 16, "run_group": "regime2"}
            for m, a in (("dcq", 40.0), ("jpeg", 45.0)) for s in range(3)]
    blocks = regimes.regime_blocks(records.summarize(recs), recs, [], [])
    row = next(r for r in blocks[2][2] if r[0] == "`jpeg`")
    assert row[7].startswith("+5.00 [+5.00, +5.00]") and "fewer than 5 seeds" in row[7]
    five = recs + [dict(r, seed=r["seed"] + 3, test_accuracy=r["test_accuracy"] + 3) for r in recs[:2]] + \
        [dict(r, seed=r["seed"] + 3, test_accuracy=r["test_accuracy"] + 3) for r in recs[3:5]]
    row = next(r for r in regimes.regime_blocks(records.summarize(five), five, [], [])[2][2] if r[0] == "`jpeg`")
    assert "**established**: higher" in row[7]


def test_every_committed_report_output_is_ours_so_a_rerun_may_replace_it():
    """The report refuses to replace a file that is not a dcq output. The figures it draws only when a study has run
    are not DVC outs (DVC does not delete them first), so a committed one must carry dcq's mark, or a fresh clone's
    `dvc repro` stops at the report."""
    import yaml

    from pipeline.io.atomic import is_dcq_output
    from pipeline.report.plot_data import is_plot_csv
    from tests.conftest import REPO

    paths = yaml.safe_load((REPO / "paths.yaml").read_text())["paths"]
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]["cmd"]
    outputs = [paths[key] for key in re.findall(r"\$\{paths\.(\w+)\}", cmd) if paths[key].startswith("reports/")]
    assert len(outputs) >= 10
    for out in outputs:
        path = REPO / out
        if path.exists():
            assert is_dcq_output(path, is_plot_csv if path.suffix == ".csv" else None), out


@pytest.mark.parametrize("method", ["median_cut", "kmeans_lab"])
def test_the_methods_grid_quantizes_its_images_as_the_baseline_store_holds_them(small_run, tmp_path, method):
    """No study store is read: the grid's per-image quantizer column is computed again, and equals the store."""
    import numpy as np

    from pipeline.report import gather
    from pipeline.stages import baseline

    store_path = tmp_path / f"{method}-q2.zarr"
    params = baseline.BaselineParams(kmeans_iterations=5)
    baseline.run(params, BASE, method, 2, small_run.prepared, store_path)
    store = DCQStore(store_path)
    images = zarr.open_group(str(small_run.prepared), mode="r")["train/images"]
    rows = np.array([3, 0, 17, 42])
    originals = np.stack([images[int(r)] for r in rows])
    recs = [{"method": method, "bits": 2, "seed": 0}]
    q, columns = gather.method_columns(recs, {2: DCQStore(small_run.dcq(2))}, originals, rows,
                                       report.quantizers(params, BASE))
    assert q == 2 and [name for name, _ in columns] == ["dcq", method]
    column = columns[1][1]
    for r in rows:
        assert np.array_equal(column.decode(int(r), int(r) + 1), store.decode(int(r), int(r) + 1))
        assert np.array_equal(column.palettes[column.clusters[int(r)]], store.palettes[int(store.clusters[int(r)])])
    shutil.rmtree(store_path)  # what the report reads is the originals, not the store
    assert gather.method_columns(recs, {2: DCQStore(small_run.dcq(2))}, originals, rows,
                                 report.quantizers(params, BASE))[1][1][1].decode(3, 4).shape == (1, 32, 32, 3)


def test_every_method_is_compared_with_the_strongest_codec_at_its_q(small_run, tmp_path):
    """The store to beat at equal bytes: each method at q minus the best standard codec there, paired by seed,
    established only with 5 seeds and an interval that excludes 0."""
    recs = records_for(small_run)
    for method, accs in (("jpeg", [50.0, 51.0, 52.0, 51.5, 50.5]), ("webp", [40.0, 41.0, 42.0, 41.0, 40.0]),
                         ("patch_vq", [52.0, 52.5, 53.5, 53.0, 52.0]), ("kmeans_lab", [45.0, 46.0])):
        for seed, acc in enumerate(accs):
            recs.append({"method": method, "bits": 1, "model": "convnetd3", "seed": seed, "test_accuracy": acc,
                         "compression_ratio": 0.02, "train_bytes": 10000, "train_set": str(small_run.dcq(1)),
                         "epochs": 1})
    # a store sized to another q's bytes (q = 3 indices in about q = 1's bytes) meets the codec of the budget nearest
    # its bytes; one far from every codec's bytes meets none
    for bits, stored in ((3, 10400), (4, 11500)):
        recs += [{"method": "dcq_context", "bits": bits, "model": "convnetd3", "seed": seed, "test_accuracy": 49.0,
                  "compression_ratio": 0.02, "train_bytes": stored, "train_set": str(small_run.dcq(1)), "epochs": 1}
                 for seed in range(5)]
    md = render(small_run, tmp_path / "out", recs)["md"].read_text()
    table = md.split("## Differences to the standard codec at each bit depth")[1].split("\n## ")[0]
    assert re.search(r"\| convnetd3 \| 3 \(at q = 1's bytes\) \| dcq_context \| DCQ, context-coded indices \| jpeg \| "
                     r"1.04x \| -2.00 ± 0.79 \|.*\*\*established\*\*: lower \|", table)
    assert "| 4 " not in table
    assert re.search(r"\| convnetd3 \| 1 \| patch_vq \| shared patch codebook \| jpeg \| 1.00x \| \+1.60 ± 0.22 \| "
                     r"\[\+1.32, \+1.88\] \(paired, n=5\) \| \*\*established\*\*: higher \|", table)
    assert re.search(r"\| 1 \| webp \| standard codec \| jpeg \|.*\*\*established\*\*: lower", table)
    assert re.search(r"\| 1 \| kmeans_lab \|.*not established \(fewer than 5 seeds\)", table)
    assert "| 1 | jpeg |" not in table and "| 2 |" not in table  # the codec itself; no codec ran at q=2
