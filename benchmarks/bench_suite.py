"""Benchmark: wall time of the whole tiny course on this machine, per notebook.

    python benchmarks/bench_suite.py        # runs every notebook on `tiny` into a temporary RUN_DIR

Results: benchmarks/results/suite_<device>_<date>.json (seconds per notebook, total, versions, cores).
A benchmark, not a test: nothing is asserted about time.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import date
from pathlib import Path

from helpers.env import versions
from helpers.runs import format_summary, run_course

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_course("tiny", Path(tmp) / "run")
    print(format_summary(summary))
    import torch

    result = {"benchmark": "course_suite", "profile": "tiny", "date": date.today().isoformat(), "device": "cpu",
              "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "versions": versions(), "failure": summary["failure"],
              "notebooks": {n["notebook"]: n["seconds"] for n in summary["notebooks"]},
              "total_seconds": round(sum(n["seconds"] for n in summary["notebooks"]), 1)}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"suite_cpu_{result['date']}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
