"""Start-up of each stage command: the wall time of `dcq STAGE --help` in a fresh process (Python, the CLI, and the
stage module with everything it imports), the median of several runs, and whether the process imported torch.

    python benchmarks/bench_startup.py --label after --out benchmarks/startup_cpu_avx2.json

A stage's start-up is paid once per `dvc repro` stage process; stages that run no model should not pay for
torch. With --out, the result is merged into the JSON under its label (so before and after sit side by side)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import typer

from pipeline.cli import STAGES

PROBE = ("import sys, time; t = time.perf_counter(); from pipeline.cli import main; sys.argv = ['dcq', {stage!r}, "
         "'--help']\ntry:\n    main()\nexcept SystemExit:\n    pass\nprint('STARTUP', time.perf_counter() - t, "
         "'torch' in sys.modules)")


def measure(stage: str, repeats: int) -> dict:
    walls, inner, torch = [], [], False
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROBE.format(stage=stage)], capture_output=True, text=True,
                             check=True).stdout
        walls.append(time.perf_counter() - start)
        line = next(line for line in out.splitlines() if line.startswith("STARTUP"))
        inner.append(float(line.split()[1]))
        torch = line.split()[2] == "True"
    return {"wall_s": round(statistics.median(walls), 3), "imports_s": round(statistics.median(inner), 3),
            "imports_torch": torch}


def main(label: str = typer.Option(..., help="e.g. before / after"), repeats: int = typer.Option(5),
         out: Path | None = typer.Option(None, help="JSON to merge the result into")):
    rows = {stage: measure(stage, repeats) for stage in STAGES}
    for stage, row in rows.items():
        print(f"{stage:20s} {row['wall_s']:6.2f} s wall, {row['imports_s']:5.2f} s imports, "
              f"torch={'yes' if row['imports_torch'] else 'no'}")
    if out is not None:
        data = json.loads(out.read_text()) if out.exists() else {}
        data[label] = {"repeats": repeats, "stages": rows}
        out.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    typer.run(main)
