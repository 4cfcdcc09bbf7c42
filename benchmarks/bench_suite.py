"""Benchmark: wall time of the whole course on this machine, per notebook, with each notebook's slowest cells.

    python benchmarks/bench_suite.py                         # every notebook on `tiny` into a temporary RUN_DIR
    python benchmarks/bench_suite.py --profile smol          # the course on SmolLM2-135M-Instruct (make setup-smol)
    python benchmarks/bench_suite.py --from-run runs/X       # record a run that already finished (its summary.json)

Results: benchmarks/results/suite_<profile>_cpu_<date>[_seed<N>].json: seconds per notebook and total, the slowest
cells of each notebook (papermill's per-cell timings), the training numbers the sizes were chosen by (steps, step
time, accuracy, rewards), versions, cores and the CPU's capability. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import date, datetime
from pathlib import Path

from helpers.env import versions
from helpers.runs import collect_metrics, format_summary, run_course

RESULTS = Path(__file__).resolve().parent / "results"
# Per notebook, the metrics worth keeping beside the times (what a profile's sizes trade against).
KEPT = {"02_train_reward_model": ("eval_accuracy_before", "eval_accuracy_trainer_logged", "eval_accuracy",
                                  "train_runtime_s", "train_pairs_used", "dropped_over_max_length", "dtype"),
        "05_kto_unpaired": ("margin_gain", "rm_reward_before", "rm_reward_after", "rm_win_rate", "train_runtime_s",
                            "train_batches", "answers_before", "answers_after", "reading"),
        "06_rl_with_reward_model": ("steps", "train_runtime_s", "rm_reward_before", "rm_reward_after",
                                    "heldout_judge_before", "heldout_judge_after", "overlap_before", "overlap_after",
                                    "kl_final", "grpo_vs_scorer_max_abs_diff", "words_before", "words_after",
                                    "distinct_2_before", "distinct_2_after", "knobs")}


def slowest_cells(executed: Path, n: int = 3) -> list[dict]:
    """The `n` cells that took longest, from the start/end times papermill writes into each cell's metadata."""
    cells = []
    for index, cell in enumerate(json.loads(executed.read_text())["cells"]):
        timing = cell.get("metadata", {}).get("papermill", {})
        if timing.get("start_time") and timing.get("end_time"):
            seconds = (datetime.fromisoformat(timing["end_time"]) - datetime.fromisoformat(timing["start_time"]))
            first = next((line for line in "".join(cell["source"]).splitlines() if line and line[0] != "#"), "")
            cells.append({"cell": index, "seconds": round(seconds.total_seconds(), 1), "code": first[:80]})
    return sorted(cells, key=lambda c: -c["seconds"])[:n]


def record(summary: dict, run_dir: Path) -> dict:
    import torch

    metrics = collect_metrics(run_dir)
    seed = summary.get("parameters", {}).get("SEED")
    return {"benchmark": "course_suite", "profile": summary["profile"], "seed": seed,
            "date": date.today().isoformat(), "device": "cpu", "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "versions": versions(), "failure": summary["failure"],
            "notebooks": {n["notebook"]: n["seconds"] for n in summary["notebooks"]},
            "total_seconds": round(sum(n["seconds"] for n in summary["notebooks"]), 1),
            "slowest_cells": {p.stem: slowest_cells(p) for p in sorted((run_dir / "notebooks").glob("*.ipynb"))},
            "metrics": {name: {k: metrics.get(name, {}).get(k) for k in keys} for name, keys in KEPT.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--from-run", type=Path, help="a finished run folder (with summary.json) to record")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.from_run:
            run_dir = args.from_run.resolve()
            summary = json.loads((run_dir / "summary.json").read_text())
        else:
            run_dir = Path(tmp) / "run"
            summary = run_course(args.profile, run_dir)
        print(format_summary(summary))
        result = record(summary, run_dir)
    RESULTS.mkdir(exist_ok=True)
    suffix = f"_seed{result['seed']}" if result["seed"] not in (None, 42) else ""
    out = RESULTS / f"suite_{result['profile']}_cpu_{result['date']}{suffix}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
