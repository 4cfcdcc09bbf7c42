"""Run the course with papermill: every notebook in order, one RUN_DIR, a summary at the end.

    python -m helpers --profile tiny                 # all notebooks into runs/<timestamp>/
    python -m helpers --profile tiny -f params.yaml  # extra parameters for every notebook
    python -m helpers --notebooks 0 1                # a subset, by number (1 or 01) or name prefix

    python -m helpers --compare runs/A runs/B        # two runs' metrics side by side

Executed notebooks land in RUN_DIR/notebooks/, metrics in RUN_DIR/metrics/ (and all of them in
RUN_DIR/metrics.json), figures in RUN_DIR/figures/, a readable RUN_DIR/report.md beside them.
On a failure the runner stops, names the notebook and the cell (in the output and the report), and
exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from .env import KIT_ROOT, KitError, probe_writable
from .parameters import absolute_paths, check_parameters, given_once, load_parameters
from .report import compare_runs, write_report

NOTEBOOK_DIR = KIT_ROOT / "notebooks"


def list_notebooks(prefixes: list[str] | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks (`NN_name.ipynb`) in numeric order, optionally only those chosen.

    Args:
        prefixes: each a number (`1` or `01`: the notebook with that number) or the start of a name (`01_prep`).

    Raises:
        KitError: a choice that matches no notebook, or several (listing the notebooks that exist).
    """
    found = sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    if not prefixes or not found:
        return found
    chosen = {_choose(choice, found) for choice in prefixes}
    return [nb for nb in found if nb in chosen]


def _choose(choice: str, found: list[Path]) -> Path:
    stem = choice.removesuffix(".ipynb")
    number = stem.isascii() and stem.isdigit()
    matches = [nb for nb in found if (int(nb.name[:2]) == int(stem) if number else nb.stem.startswith(stem))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise KitError(f"--notebooks {choice} matches {len(matches)} notebooks "
                       f"({', '.join(nb.stem for nb in matches)}). Give a longer name prefix, e.g. {matches[0].stem}.")
    raise KitError(f"--notebooks {choice}: no notebook matches. The notebooks are: "
                   f"{', '.join(nb.stem for nb in found)}. Give a number (1 or 01) or the "
                   "start of a name (01_prep).")


def prepare_run_dir(run_dir: str | Path) -> Path:
    """Create RUN_DIR and its standard sub-folders; a clear error when it cannot be written.

    Raises:
        KitError: the folder cannot be created or written (names the path and the reason).
    """
    run_dir = Path(run_dir).expanduser().resolve()
    try:
        for sub in ("metrics", "figures"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        probe_writable(run_dir)
    except OSError as err:
        raise KitError(f"RUN_DIR {str(run_dir)!r} is not writable ({err.strerror or err}). "
                       "Set RUN_DIR to a folder you can write, e.g. RUN_DIR = \"runs/default\".") from err
    return run_dir


def _failure(nb: Path, err: Exception) -> dict:
    """What went wrong, in words: notebook, cell and the exception, from papermill's error."""
    source = (getattr(err, "source", "") or "").strip().splitlines()
    return {"notebook": nb.name, "cell_index": getattr(err, "cell_index", None),
            "execution_count": getattr(err, "exec_count", None), "cell_first_line": source[0] if source else "",
            "error": f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"}


def run_course(profile: str | None = None, run_dir: str | Path | None = None, parameters: dict | None = None,
               prefixes: list[str] | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> dict:
    """Execute the notebooks in order with papermill; stop at the first failure.

    Args:
        profile: default "tiny"; `parameters["PROFILE"]` is the same thing (giving both differently is an error).
        run_dir: default runs/<timestamp>; `parameters["RUN_DIR"]` is the same thing, relative to the caller's
            working directory either way.

    Returns:
        A summary: run_dir, per-notebook status and seconds, the failure (or None), merged metrics.
    """
    import papermill as pm

    from .profiles import get_profile

    notebooks = list_notebooks(prefixes, notebook_dir)
    if not notebooks:
        raise KitError(f"no notebooks (NN_name.ipynb) in {notebook_dir}")
    parameters = check_parameters(parameters or {}, notebooks)
    profile = given_once("PROFILE", "--profile", profile, parameters, str) or "tiny"
    run_dir = given_once("RUN_DIR", "--run-dir", run_dir, parameters, lambda p: Path(p).expanduser().resolve())
    get_profile(profile)  # fail fast on a typo, listing the valid names
    run_dir = prepare_run_dir(run_dir or KIT_ROOT / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S"))
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(exist_ok=True)
    params = {"PROFILE": profile, "RUN_DIR": str(run_dir), **absolute_paths(parameters)}
    summary = {"run_dir": str(run_dir), "profile": profile, "parameters": params, "notebooks": [], "failure": None}
    for nb in notebooks:
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=params, kernel_name="python3",
                                cwd=str(nb.parent), progress_bar=False)
            status = "ok"
        except Exception as err:  # noqa: BLE001 - papermill raises several types; all are reported
            summary["failure"] = _failure(nb, err)
            status = "FAILED"
        summary["notebooks"].append({"notebook": nb.name, "status": status,
                                     "seconds": round(time.perf_counter() - start, 1)})
        if status != "ok":
            break
    summary["metrics"] = collect_metrics(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    write_report(summary)
    return summary


def collect_metrics(run_dir: str | Path) -> dict:
    """All `RUN_DIR/metrics/*.json` files, keyed by notebook stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(run_dir, "metrics").glob("*.json"))}


def format_summary(summary: dict) -> str:
    """A plain-text table of the run, plus the failure in words when there is one."""
    lines = [f"run: {summary['run_dir']}  (profile {summary['profile']})", f"{'notebook':<34}{'status':<8}seconds"]
    lines += [f"{n['notebook']:<34}{n['status']:<8}{n['seconds']:>7}" for n in summary["notebooks"]]
    fail = summary["failure"]
    if fail:
        lines.append(f"FAILED in {fail['notebook']}, cell {fail['cell_index']} "
                     f"(execution count {fail['execution_count']}: {fail['cell_first_line']!r})")
        lines.append(f"  {fail['error']}")
        lines.append(f"  executed notebook with the error: {summary['run_dir']}/notebooks/{fail['notebook']}")
    lines.append(f"report: {summary['run_dir']}/report.md")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", help="profile name (see helpers.profiles); default: tiny")
    parser.add_argument("--run-dir", help="default: runs/<timestamp>")
    parser.add_argument("-f", "--parameters-file", help="YAML of notebook parameters (as papermill -f)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--notebooks", nargs="+", help="numbers or name prefixes to run, e.g. 0 1 (or 00 01)")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two runs' metrics and exit")
    args = parser.parse_args(argv)
    try:
        if args.compare:
            print(compare_runs(*args.compare))
            return 0
        summary = run_course(args.profile, args.run_dir, load_parameters(args.parameters_file, args.parameter),
                             args.notebooks)
    except (KitError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 1 if summary["failure"] else 0


def save_metrics(run_dir: str | Path, name: str, metrics: dict) -> Path:
    """Write RUN_DIR/metrics/<name>.json (what tests and run reports read) and return its path."""
    path = Path(run_dir) / "metrics" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False, default=str))
    return path


if __name__ == "__main__":
    sys.exit(main())
