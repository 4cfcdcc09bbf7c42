"""Run reports: one `metrics.json` and a readable `report.md` per run, and a comparison of two runs.

`helpers.runs` writes both at the end of every run, failed or not:

    runs/<id>/metrics.json   {"00_setup": {...}, "01_prepare_data": {...}, ...}
    runs/<id>/report.md      summary table, failure (notebook + cell), headline metrics, figures, versions

    python -m helpers --compare runs/A runs/B    # the scalar metrics of two runs side by side
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from .env import KitError

HEADLINE = {
    "00_setup": ("device", "dtype"),
    "01_prepare_data": ("read", "kept", "dropped", "train_pairs", "test_pairs", "over_max_length"),
    "02_train_reward_model": ("eval_accuracy", "eval_margin", "train_loss", "train_runtime_s"),
    "03_merge_value_head": ("max_abs_diff_merged_vs_adapter", "agreement_8bit_vs_merged", "spearman_8bit_vs_merged"),
    "04_score_responses": ("test_accuracy", "calibration_ece", "length_reward_spearman", "accuracy_length_balanced"),
    "05_kto_unpaired": ("margin_before", "margin_after", "rm_reward_before", "rm_reward_after", "rm_win_rate"),
    "06_rl_with_reward_model": ("rm_reward_before", "rm_reward_after", "heldout_judge_before", "heldout_judge_after",
                                "overlap_before", "overlap_after", "kl_final", "grpo_vs_scorer_max_abs_diff"),
}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def scalar_metrics(metrics: dict) -> dict[str, object]:
    """Flatten {notebook: {key: value}} to {"notebook.key": value} for numbers, strings and booleans."""
    flat = {}
    for notebook, values in metrics.items():
        for key, value in values.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                flat[f"{notebook}.{key}"] = value
    return flat


def _versions(metrics: dict) -> dict:
    from .env import versions

    return metrics.get("00_setup", {}).get("versions") or versions()


def render_report(summary: dict) -> str:
    """The Markdown report of a run summary (as `helpers.runs.run_course` returns it)."""
    metrics, fail = summary.get("metrics", {}), summary.get("failure")
    total = sum(n["seconds"] for n in summary["notebooks"])
    lines = [f"# Run report: {Path(summary['run_dir']).name}", "",
             f"- profile: `{summary['profile']}`; status: **{'FAILED' if fail else 'ok'}**; "
             f"wall time {total:.0f} s; written {datetime.now():%Y-%m-%d %H:%M}",
             f"- parameters: `{json.dumps(summary.get('parameters', {}), ensure_ascii=False)}`", "",
             "| notebook | status | seconds | headline metrics |", "|---|---|---|---|"]
    for nb in summary["notebooks"]:
        values = metrics.get(Path(nb["notebook"]).stem, {})
        head = ", ".join(f"{k} {_fmt(values[k])}" for k in HEADLINE.get(Path(nb["notebook"]).stem, ()) if k in values)
        lines.append(f"| {nb['notebook']} | {nb['status']} | {nb['seconds']} | {head} |")
    if fail:
        lines += ["", "## Failure", "", f"- notebook: `{fail['notebook']}`, cell {fail['cell_index']} "
                  f"(execution count {fail['execution_count']}), first line `{fail['cell_first_line']}`",
                  f"- error: `{fail['error']}`", f"- executed notebook: `notebooks/{fail['notebook']}`"]
    figures = sorted((Path(summary["run_dir"]) / "figures").glob("*.png"))
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f.stem}](figures/{f.name})" for f in figures]
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in _versions(metrics).items())]
    return "\n".join(lines) + "\n"


def write_report(summary: dict) -> Path:
    """Write RUN_DIR/metrics.json (all notebooks' metrics) and RUN_DIR/report.md; return the report path."""
    run_dir = Path(summary["run_dir"])
    (run_dir / "metrics.json").write_text(json.dumps(summary.get("metrics", {}), indent=2, ensure_ascii=False,
                                                     default=str))
    path = run_dir / "report.md"
    path.write_text(render_report(summary), encoding="utf-8")
    return path


def read_run_metrics(run_dir: str | Path) -> dict:
    """A run's `metrics.json`, {notebook: {metric: value}}.

    Raises:
        KitError: the folder, or its metrics.json, is missing, cut off or not that shape (names which).
    """
    run_dir, path = Path(run_dir), Path(run_dir) / "metrics.json"
    if not run_dir.is_dir():
        raise KitError(f"--compare: {run_dir} is not a folder. Give two run folders, e.g. runs/20261120-020000.")
    if not path.is_file():
        parts = sorted(p.name for p in (run_dir / "metrics").glob("*.json"))
        raise KitError(f"--compare: {run_dir} has no metrics.json. A run writes it when it ends, failed or not; "
                       f"a run stopped before that has only metrics/*.json ({', '.join(parts) or 'there are none'}).")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise KitError(f"--compare: {path} is not valid JSON ({err.msg} line {err.lineno}, column {err.colno}): "
                       "it was cut off or edited. Compare another run, or rerun this one.") from err
    if not isinstance(metrics, dict):
        problem = f"the file holds a {type(metrics).__name__}"
    else:
        problem = next((f"{k!r} is a {type(v).__name__}" for k, v in metrics.items() if not isinstance(v, dict)), "")
    if problem:
        raise KitError(f"--compare: {path} is not {{notebook: {{metric: value}}}}: {problem}.")
    return metrics


def compare_runs(run_a: str | Path, run_b: str | Path) -> str:
    """A table of every scalar metric in either run, with the difference where both are numbers."""
    a, b = (scalar_metrics(read_run_metrics(r)) for r in (run_a, run_b))
    lines = [f"{'metric':<58}{Path(run_a).name:>16}{Path(run_b).name:>16}{'b - a':>12}"]
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "-"), b.get(key, "-")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        diff = f"{vb - va:+.4g}" if numeric else ""
        lines.append(f"{key:<58}{_fmt(va):>16}{_fmt(vb):>16}{diff:>12}")
    return "\n".join(lines)
