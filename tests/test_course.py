"""The course itself: every notebook runs top to bottom on `tiny` with papermill, then again under nbval.

This is the CI harness every notebook joins by being added to notebooks/: papermill executes them in
numeric order into one RUN_DIR, each notebook's metrics JSON is checked below, and nbval re-executes
the papermill outputs (same injected parameters) checking `# NBVAL_CHECK_OUTPUT` cells reproduce
exactly and error demonstrations raise.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.runs import format_summary, list_notebooks, run_course

pytestmark = pytest.mark.notebooks


def check_00_setup(m):
    assert m["ready"] is True and m["profile"] == "tiny" and m["device"] == "cpu"
    assert set(m["models"]) == {"tiny-llama3", "tiny-qwen2"}
    for info in m["models"].values():
        assert len(info["checksum"]) == 16 and info["parameters"] > 100_000


CHECKS = {"00_setup": check_00_setup}


@pytest.fixture(scope="session")
def course_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("course") / "run"
    summary = run_course("tiny", run_dir)
    assert summary["failure"] is None, format_summary(summary)
    return summary


def test_every_notebook_ran(course_run):
    ran = [n["notebook"] for n in course_run["notebooks"]]
    assert ran == [nb.name for nb in list_notebooks()]
    print(format_summary(course_run))


@pytest.mark.parametrize("nb", list_notebooks(), ids=lambda p: p.stem)
def test_metrics_of_each_notebook(course_run, nb):
    metrics = course_run["metrics"]
    assert nb.stem in metrics, f"{nb.name} wrote no RUN_DIR/metrics/{nb.stem}.json"
    assert nb.stem in CHECKS, f"add a check for {nb.stem}'s metrics to the CI harness"
    CHECKS[nb.stem](metrics[nb.stem])


def test_error_demonstrations_raised(course_run):
    for executed in sorted((course_run_dir(course_run) / "notebooks").glob("*.ipynb")):
        for cell in json.loads(executed.read_text())["cells"]:
            if "raises-exception" in cell["metadata"].get("tags", []):
                errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
                assert errors, f"{executed.name}: error-demo cell did not raise: {''.join(cell['source'])[:80]!r}"


def test_nbval_reexecution_matches(course_run):
    executed = sorted(str(p) for p in (course_run_dir(course_run) / "notebooks").glob("*.ipynb"))
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
                             "-o", "addopts=", *executed], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def course_run_dir(summary):
    return Path(summary["run_dir"])
