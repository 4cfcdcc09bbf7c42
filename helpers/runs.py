"""Run the course with papermill: every notebook in order, one RUN_DIR, a summary at the end.

    python -m helpers --profile tiny                 # all notebooks into runs/<timestamp>/
    python -m helpers --profile tiny -f params.yaml  # extra parameters for every notebook
    python -m helpers --notebooks 00 01              # a subset, by number prefix

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
from .report import compare_runs, write_report

NOTEBOOK_DIR = KIT_ROOT / "notebooks"


def list_notebooks(prefixes: list[str] | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course notebooks (`NN_name.ipynb`) in numeric order, optionally only those starting with a prefix."""
    found = sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        found = [nb for nb in found if any(nb.name.startswith(p) for p in prefixes)]
    return found


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


def run_course(profile: str = "tiny", run_dir: str | Path | None = None, parameters: dict | None = None,
               prefixes: list[str] | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> dict:
    """Execute the notebooks in order with papermill; stop at the first failure.

    Returns:
        A summary: run_dir, per-notebook status and seconds, the failure (or None), merged metrics.
    """
    import papermill as pm

    from .profiles import get_profile

    get_profile(profile)  # fail fast on a typo, listing the valid names
    parameters = check_parameters(parameters or {}, list_notebooks(prefixes, notebook_dir))
    run_dir = prepare_run_dir(run_dir or KIT_ROOT / "runs" / datetime.now().strftime("%Y%m%d-%H%M%S"))
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(exist_ok=True)
    params = {"PROFILE": profile, "RUN_DIR": str(run_dir), **_absolute_paths(parameters or {})}
    summary = {"run_dir": str(run_dir), "profile": profile, "parameters": params, "notebooks": [], "failure": None}
    for nb in list_notebooks(prefixes, notebook_dir):
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


def notebook_parameters(notebooks: list[Path]) -> dict[str, dict[str, str]]:
    """{notebook name: {parameter: its default, as written in the `parameters` cell}} (papermill's reading)."""
    import papermill as pm

    return {nb.stem: {k: v["default"] for k, v in pm.inspect_notebook(str(nb)).items()} for nb in notebooks}


def _expected_type(default: str):
    """The type a parameter's literal default has (None: no literal, or None, so any value is accepted)."""
    import ast

    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return str  # an expression such as default_run_dir() or str(KIT_ROOT / ...): a path or a name
    return None if value is None else type(value)


def _convert(name: str, value, default: str, where: str):
    expected = _expected_type(default)
    if expected is None or value is None and expected is str or type(value) is expected:
        return value
    if expected is float and type(value) is int:
        return float(value)
    if expected is str and type(value) in (int, float):
        return str(value)
    raise KitError(f"parameter {name}: expected {expected.__name__} (its default in {where} is {default}), got "
                   f"{value!r} ({type(value).__name__}). Fix: give a value of type {expected.__name__}, e.g. "
                   f"-p {name} {default}.")


def check_parameters(parameters: dict, notebooks: list[Path]) -> dict:
    """Check run parameters against the notebooks' `parameters` cells before anything runs.

    Returns:
        The parameters, each converted to its default's type (an int for a float parameter, a number for a
        string one).

    Raises:
        KitError: an unknown name (with a close match and every notebook's parameters), or a value of the
            wrong type (naming the parameter and the notebook that defines it).
    """
    import difflib

    declared = notebook_parameters(notebooks)
    known: dict[str, tuple[str, str]] = {}
    for nb, params in declared.items():
        for name, default in params.items():
            known.setdefault(name, (default, nb))
    unknown = [name for name in parameters if name not in known]
    if unknown:
        hints = [f"{name!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(
            name, known, n=1)) else "") for name in unknown]
        listing = "; ".join(f"{nb}: {', '.join(params)}" for nb, params in declared.items())
        raise KitError(f"unknown parameter {', '.join(hints)}. The notebooks to run take: {listing}.")
    return {name: _convert(name, value, *known[name]) for name, value in parameters.items()}


def _absolute_paths(parameters: dict) -> dict:
    """`*_PATH` parameters naming a file or folder relative to here, made absolute: notebooks run in notebooks/."""
    return {k: str(Path(v).resolve()) if k.endswith("_PATH") and isinstance(v, str) and v
            and not Path(v).is_absolute() and Path(v).exists() else v for k, v in parameters.items()}


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


def _load_parameters(path: str | None, pairs: list[list[str]]) -> dict:
    """Notebook parameters from a YAML file (as papermill -f) and NAME VALUE pairs (as papermill -p)."""
    import yaml

    params = dict(yaml.safe_load(Path(path).read_text()) or {}) if path else {}
    for key, value in pairs:
        params[key] = yaml.safe_load(value)  # "3" -> 3, "true" -> True, like papermill -p
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="tiny", help="profile name (see helpers.profiles)")
    parser.add_argument("--run-dir", help="default: runs/<timestamp>")
    parser.add_argument("-f", "--parameters-file", help="YAML of notebook parameters (as papermill -f)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--notebooks", nargs="*", help="number prefixes to run, e.g. 00 01")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two runs' metrics and exit")
    args = parser.parse_args(argv)
    if args.compare:
        print(compare_runs(*args.compare))
        return 0
    try:
        summary = run_course(args.profile, args.run_dir, _load_parameters(args.parameters_file, args.parameter),
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
