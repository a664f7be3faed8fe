"""Figures: accuracy against compression ratio, and full-colour vs DCQ image grids with palettes."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.io.dcq_store import DCQStore

# Fixed metadata so the same data gives the same PNG bytes.
PNG_METADATA = {"Software": None}


def accuracy_plot(rows: list[dict], out: Path) -> None:
    """Mean test accuracy (error bars: std over seeds) against the measured compression ratio, one line per
    (method, model); full colour is a point at its own measured ratio and a dashed reference line."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    models = sorted({r["model"] for r in rows})
    for model in models:
        for series in sorted({r.get("series", r["method"]) for r in rows if r["model"] == model}):
            pts = sorted((r for r in rows if r["model"] == model and r.get("series", r["method"]) == series),
                         key=lambda r: r["compression_ratio"])
            method = pts[0]["method"]
            label = series if len(models) == 1 else f"{series} ({model})"
            x = [p["compression_ratio"] for p in pts]
            y = [p["test_accuracy_mean"] for p in pts]
            line = ax.errorbar(x, y, yerr=[p["test_accuracy_std"] for p in pts], marker="o", capsize=3, label=label)
            if method == "full" and pts[0].get("ablation") is None:
                ax.axhline(y[0], color=line[0].get_color(), linestyle="--", linewidth=0.8)
            for p in pts:
                if p["bits"] is not None:
                    ax.annotate(f"{p['bits']} bit", (p["compression_ratio"], p["test_accuracy_mean"]),
                                textcoords="offset points", xytext=(4, -11), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("stored train-set bytes / 24-bit RGB bytes (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy on the original test set vs train-set storage")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
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


def placeholder(text: str, out: Path) -> None:
    """A small PNG that says why a figure is empty."""
    fig, ax = plt.subplots(figsize=(4, 0.8), dpi=100)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9)
    ax.axis("off")
    fig.savefig(out, format="png", metadata=PNG_METADATA)
    plt.close(fig)
