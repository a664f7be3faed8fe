"""Figures: accuracy against storage and IPC budget, against colour fidelity, per-class confusion, image grids."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.io.dcq_store import DCQStore
from pipeline.report.figure_style import method_style, place_labels

# Fixed metadata so the same data gives the same PNG bytes.
PNG_METADATA = {"Software": "dcq"}  # the owner mark (pipeline/io/atomic.py), not a version: reruns write the same bytes


def _series(rows: list[dict]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        label = r.get("series", r["method"]) if len({x["model"] for x in rows}) == 1 else \
            f"{r.get('series', r['method'])} ({r['model']})"
        if label not in seen:
            seen.append(label)
    return seen


def _label(r: dict, rows: list[dict]) -> str:
    name = r.get("series", r["method"])
    return name if len({x["model"] for x in rows}) == 1 else f"{name} ({r['model']})"


def _bytes_axis(ax, storage_rows: list[dict], ticks: list[float]) -> None:
    """The same axis as bytes per image, on top (every store counted whole, shared tables included)."""
    full = next((r for r in storage_rows if r["method"] == "full" and r.get("raw_bytes") and r.get("train_images")),
                None)
    if full is None or not ticks:
        return
    per_image = full["raw_bytes"] / full["train_images"]
    top = ax.secondary_xaxis("top", functions=(lambda pct: pct / 100 * per_image, lambda size: size / per_image * 100))
    sizes = [s for s in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
             if ticks[0] / 100 * per_image <= s <= ticks[-1] / 100 * per_image * 1.5]
    top.set_xticks(sizes, [str(s) for s in sizes])
    top.minorticks_off()
    top.set_xlabel("bytes per image", fontsize=9)


def accuracy_plot(storage_rows: list[dict], ipc_rows: list[dict], out: Path) -> None:
    """Two panels. Left: mean test accuracy (bars: std over seeds) against the train set's bytes on disk as a share
    of raw 24-bit RGB, one line per quantizer or coreset (q labels on DCQ only). Right: accuracy against the
    images-per-class budget for the distillation comparison. Legends sit outside the axes."""
    if ipc_rows:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), dpi=110, gridspec_kw={"width_ratios": [1.25, 1]})
    else:  # no distillation runs: one panel, not an empty one beside it
        fig, left = plt.subplots(figsize=(7.5, 5.2), dpi=110)
        right = None
    order = _series(storage_rows) + [s for s in _series(ipc_rows) if s not in _series(storage_rows)]
    labels = []
    for series in _series(storage_rows):
        pts = sorted((r for r in storage_rows if _label(r, storage_rows) == series), key=lambda r: r["compression_ratio"])
        style = method_style(series, order)
        x = [100 * p["compression_ratio"] for p in pts]
        y = [p["test_accuracy_mean"] for p in pts]
        if pts[0]["method"] == "full" and pts[0].get("ablation") is None:
            left.axhline(y[0], color=style["color"], linestyle="--", linewidth=0.8)
        left.errorbar(x, y, yerr=[p["test_accuracy_std"] for p in pts], capsize=3, label=series, markersize=6,
                      linewidth=1.2, **style)
        if pts[0]["method"] == "dcq" and pts[0].get("ablation") is None:
            labels += [(100 * p["compression_ratio"], p["test_accuracy_mean"], f"q={p['bits']}", style["color"])
                       for p in pts]
    left.set_xscale("log")
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100)
             if storage_rows and min(100 * r["compression_ratio"] for r in storage_rows) / 2 <= t <= 150]
    left.set_xticks(ticks, [f"{t:g}%" for t in ticks])
    left.minorticks_off()
    left.set_xlabel("stored train set, % of raw 24-bit RGB (log scale)")
    _bytes_axis(left, storage_rows, ticks)
    left.set_ylabel("test accuracy (%)")
    left.set_title("Quantizers and coresets at matched storage", fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    if storage_rows:
        left.legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    place_labels(left, labels)
    if ipc_rows:
        for series in _series(ipc_rows):
            pts = sorted((r for r in ipc_rows if _label(r, ipc_rows) == series), key=lambda r: r["ipc"])
            right.errorbar([p["ipc"] for p in pts], [p["test_accuracy_mean"] for p in pts],
                           yerr=[p["test_accuracy_std"] for p in pts], capsize=3, label=series, markersize=6,
                           linewidth=1.2, **method_style(series, order))
        ipcs = sorted({r["ipc"] for r in ipc_rows})
        right.set_xscale("log")
        right.set_xticks(ipcs, [str(i) for i in ipcs])
        right.set_xlabel("storage budget: images per class (log scale)")
        right.set_ylabel("test accuracy (%)")
        right.legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=2, fontsize=8, frameon=False)
        right.grid(True, which="both", alpha=0.3)
        right.set_title("Distillers at equal storage (IPC budget)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, format="png", metadata=PNG_METADATA)
    plt.close(fig)


def sharing_plot(panels: list[dict], out: Path) -> None:
    """One panel per (model, q): test accuracy (bars: 95% interval of the mean) against the number of shared
    palettes k on a log axis, each point labelled with its bytes on disk; dashed lines: the strongest per-image
    quantizer and codec at that q."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.4), dpi=110, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        ks = [p["k"] for p in panel["points"]]
        order = ["dcq", *(ref["label"].split(" ")[0] for ref in panel["references"])]
        style = method_style("dcq", order)
        ax.errorbar(ks, [p["mean"] for p in panel["points"]], yerr=[p["half"] for p in panel["points"]],
                    capsize=3, markersize=6, linewidth=1.4, label="DCQ, k shared palettes", **style)
        for ref in panel["references"]:
            ref_style = method_style(ref["label"].split(" ")[0], order)
            ax.axhline(ref["mean"], color=ref_style["color"], linestyle="--", linewidth=1.1, label=ref["label"])
        ax.set_xscale("log")
        ax.set_xlim(min(ks) / 2, max(ks) * 3)  # room for the labels right of the last point
        ticks = sorted(set(ks))
        ax.set_xticks(ticks, [f"{k:,}" + (" = N" if k == panel["images"] else "") for k in ticks], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("palettes k (images per palette: N / k), log scale")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"q = {panel['bits']}, {panel['model']}, n = {min(p['n'] for p in panel['points'])} seeds",
                     fontsize=10)
        lows = [p["mean"] - p["half"] for p in panel["points"]] + [r["mean"] for r in panel["references"]]
        highs = [p["mean"] + p["half"] for p in panel["points"]] + [r["mean"] for r in panel["references"]]
        ax.set_ylim(min(lows) - 1.5, max(highs) + 2.5)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    for ax, panel in zip(axes[0], panels):
        colour = method_style("dcq", ["dcq"])["color"]
        place_labels(ax, [(p["k"], p["mean"], p["bytes"], colour) for p in panel["points"]], fontsize=7.5)
    fig.savefig(out, format="png", metadata=PNG_METADATA)
    plt.close(fig)


def fidelity_plot(rows: list[dict], out: Path) -> None:
    """Mean test accuracy against the train set's mean CIEDE2000 ΔE to the original images, one point per store."""
    fig, ax = plt.subplots(figsize=(8.5, 4.6), dpi=110)
    order = _series(rows)
    labels = []
    for series in order:
        pts = sorted((r for r in rows if _label(r, rows) == series), key=lambda r: r["delta_e2000"])
        ax.errorbar([p["delta_e2000"] for p in pts], [p["test_accuracy_mean"] for p in pts],
                    yerr=[p["test_accuracy_std"] for p in pts], capsize=3, label=series, markersize=6,
                    linewidth=1.0, **method_style(series, order))
        if pts[0]["method"] == "dcq" and pts[0].get("ablation") is None:
            labels += [(p["delta_e2000"], p["test_accuracy_mean"], f"q={p['bits']}",
                        method_style(series, order)["color"]) for p in pts]
    ax.margins(x=0.08)
    ax.set_xlabel("mean CIEDE2000 ΔE of the train images to the originals (lower = closer)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against colour fidelity of the stored train set", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    place_labels(ax, labels)
    fig.savefig(out, format="png", metadata=PNG_METADATA)
    plt.close(fig)


def confusion_grid(matrices: list[tuple[str, np.ndarray]], classes: list[str], out: Path) -> None:
    """Row-normalised confusion matrices (% of each true class), the first one (full colour) as it is, each
    other as its difference to the first: red cells are predictions the quantized train set made more often."""
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.6, 4.2), dpi=110, squeeze=False)
    pcts = [100.0 * matrix / np.maximum(matrix.sum(1, keepdims=True), 1) for _, matrix in matrices]
    # one symmetric scale for every difference panel, wide enough for the largest difference (never clipped)
    limit = max([10.0, *(float(np.abs(p - pcts[0]).max()) for p in pcts[1:])])
    limit = float(np.ceil(limit / 10.0) * 10.0)
    for ax, (title, _), pct in zip(axes[0], matrices, pcts):
        if pct is pcts[0]:
            im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
            ax.set_title(f"{title}\n% of true class", fontsize=10)
        else:
            im = ax.imshow(pct - pcts[0], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_title(f"{title}\nminus full colour (points)", fontsize=10)
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=9)
        ax.set_yticks(range(len(classes)), classes if ax is axes[0][0] else [], fontsize=9)
        ax.set_xlabel("predicted", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=9)
    axes[0][0].set_ylabel("true class", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, format="png", metadata=PNG_METADATA)
    plt.close(fig)


def palette_swatch(palette: np.ndarray, size: int) -> np.ndarray:
    """A size x size uint8 image of the palette's colours as a near-square grid of swatches."""
    k = len(palette)
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    cell_h, cell_w = size // rows, size // cols
    out = np.full((size, size, 3), 255, np.uint8)
    for i, colour in enumerate(palette):
        r, c = divmod(i, cols)
        out[r * cell_h:(r + 1) * cell_h - 1, c * cell_w:(c + 1) * cell_w - 1] = colour
    return out


def image_grid(originals: np.ndarray, labels: list[str], rows: np.ndarray, columns: list[tuple[str, DCQStore]],
               out: Path) -> None:
    """One row per train image: full colour, then for each (title, store) column the reconstruction and the
    palette the image may use (its cluster's shared palette for DCQ, its own for a per-image quantizer)."""
    n = len(rows)
    ncols = 1 + 2 * len(columns)
    fig, axes = plt.subplots(n, ncols, figsize=(1.15 * ncols, 1.2 * n + 0.4), dpi=110, squeeze=False,
                             gridspec_kw={"width_ratios": [1] + [1, 0.8] * len(columns)})
    decoded = [np.stack([store.decode(int(r), int(r) + 1)[0] for r in rows]) for _, store in columns]
    for i, row in enumerate(rows):
        axes[i, 0].imshow(originals[i], interpolation="nearest")
        axes[i, 0].set_ylabel(labels[i], fontsize=8)
        for j, (title, store) in enumerate(columns):
            axes[i, 1 + 2 * j].imshow(decoded[j][i], interpolation="nearest")
            palette = store.palettes[int(store.clusters[row])]
            axes[i, 2 + 2 * j].imshow(palette_swatch(palette, 64), interpolation="nearest")
            if i == 0:
                axes[i, 1 + 2 * j].set_title(title, fontsize=9)
                axes[i, 2 + 2 * j].set_title(f"{2 ** store.bits} col.", fontsize=8)
    axes[0, 0].set_title("full colour", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    fig.savefig(out, format="png", metadata=PNG_METADATA)
    plt.close(fig)
