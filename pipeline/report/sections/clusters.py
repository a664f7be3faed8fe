"""How chromatic the clusters are that each DCQ store's palettes were fitted to (pipeline/quantize/chromaticity.py):
DCQ's premise is that a cluster's images share their colours."""

from __future__ import annotations

from pipeline.report import document, records
from pipeline.report.context import Report
from pipeline.report.outline import section


@section("cluster chromaticity", "body", 25)
def cluster_chromaticity(report: Report) -> list[document.Block]:
    seen, table = set(), []
    ordered = sorted(report.main_recs, key=lambda r: (r.get("ablation") or "", r["bits"] or 0))
    for r in ordered:
        chroma = r.get("cluster_chromaticity")
        name = records.series_label(r["method"], r.get("ablation"))
        if not isinstance(chroma, dict) or (name, r["bits"]) in seen:
            continue
        seen.add((name, r["bits"]))
        table.append([name, r["bits"], r.get("clusters", "-"), f"{chroma['ab']:.2f}", f"{chroma['L']:.2f}",
                      r.get("ablation_change", "-") if r.get("ablation") else "params.yaml"])
    if not table:
        return []
    return [("h2", "How chromatic the clusters are"),
            ("p", ("Each DCQ store fits one palette per cluster, so its premise is that a cluster's images share "
                   "their colours. The share of the variance of each train image's mean CIE LAB colour that the "
                   "clusters explain (1 - within-cluster / total sum of squares): 1 means every cluster is one "
                   "colour, about 0 a partition that ignores colour (a random one). Measured by the cluster stage "
                   "on the train images.")),
            ("table", ["DCQ store", "q", "clusters k", "chroma (a*, b*) explained", "lightness L* explained",
                       "changed params"], table)]
