"""Per-class test accuracy of every matched-storage train set against full colour, and the confusion matrices."""

from __future__ import annotations

import numpy as np

from pipeline.report import document, records
from pipeline.report.context import Report, figure_or_reason
from pipeline.report.outline import section


@section("per class", "body", 90)
def per_class(report: Report) -> list[document.Block]:
    """Per-class test accuracy of every matched-storage train set that has confusion matrices, against full colour."""
    inputs = report.inputs
    if not inputs.confusion:
        return []
    blocks: list[document.Block] = [("h2", "Per-class test accuracy")]
    for model in sorted({k[0] for k in inputs.confusion}):
        keys = sorted((k for k in inputs.confusion if k[0] == model),
                      key=lambda k: (records.method_order(k[1]), k[2] or 0))
        acc = {k: 100.0 * np.diag(inputs.confusion[k]) / np.maximum(inputs.confusion[k].sum(1), 1) for k in keys}
        full = next((k for k in keys if k[1] == "full"), None)
        names = [k[1] if k[2] is None else f"{k[1]} q={k[2]}" for k in keys]
        table = []
        for c, cls in enumerate(inputs.classes):
            cells = [cls]
            for k in keys:
                delta = "" if full is None or k == full else f" ({acc[k][c] - acc[full][c]:+.1f})"
                cells.append(f"{acc[k][c]:.1f}{delta}")
            table.append(cells)
        blocks.append(("h3", f"model `{model}`"))
        text = ("Test accuracy (%) on each class, over all seeds' predictions; in brackets the change against full "
                "colour.")
        if full is not None and len(keys) > 1:
            lowest = min((k for k in keys if k != full), key=lambda k: k[2] or 0)
            drop = acc[lowest] - acc[full]
            worst = np.argsort(drop)[:3]
            text += (f" At {names[keys.index(lowest)]}, colour quantization costs most on "
                     + ", ".join(f"{inputs.classes[i]} ({drop[i]:+.1f})" for i in worst)
                     + f", least on {inputs.classes[int(np.argmax(drop))]} ({drop.max():+.1f}).")
        blocks.append(("p", text))
        blocks.append(("table", ["class"] + names, table))
    if inputs.confusion_png is not None:
        blocks.append(("p", ("Confusion matrices (rows: true class): full colour as % of each true class, each "
                             "quantized train set as its difference to full colour.")))
        blocks += figure_or_reason(inputs.confusion_png, "confusion matrices against full colour", inputs.absent,
                                   "confusion")
    return blocks


def confusion_order(confusion: dict[tuple, np.ndarray]) -> list[tuple]:
    """Full colour first, then the other train sets by method and bit depth (first model only)."""
    if not confusion:
        return []
    model = min(k[0] for k in confusion)
    return sorted((k for k in confusion if k[0] == model), key=lambda k: (records.method_order(k[1]), k[2] or 0))


def variant_title(key: tuple) -> str:
    _, method, bits = key
    return "full colour" if method == "full" else f"{method} q={bits}"
