"""Notebook 04 on the seeds 0, 7 and 42 and on the kit's pairs in every public pair layout: it completes, its numbers
add up.

The suite's Colab course (conftest.py's `colab_course`) runs 00-06 once, on the kit's file with SEED 42. Here only
what changes reruns, with the runner (plain papermill), each layout in its own copy of the course's run folder
(models, adapter and merged model linked; data and metrics copied), so 02 and 03 never rerun: 01 on the kit's pairs
written in the layout by tests/foreign_data.py's `write_layout`, then 04. 04 reads nothing of 01's but
data/test.jsonl (`helpers.data.NOTEBOOK_INPUTS`), and most layouts give the very same file: 04 runs once per
distinct file (`SCORED`, each with another SEED, since SEED draws the order each pair is shown in for calibration and
so moves the bins), and the other layouts are checked to hold out that file byte for byte. The PKU-SafeRLHF layout
is tests/test_foreign_course.py's: 01-05 on it, bad rows included.
"""

import os
import shutil
from pathlib import Path

import pytest
from foreign_data import LAYOUTS, write_layout

from helpers.runs import format_summary, run_course

pytestmark = pytest.mark.notebooks

# 04 runs on these layouts' held-out files, each with this SEED; they differ from one another (axolotl keeps its
# `rating` column; a folder's source_line counts records from 0), and every other layout's equals SAME_AS's
SCORED = {"ultrafeedback_binarized": 42, "axolotl": 0, "uf_folder": 7}
SAME_AS = "ultrafeedback_binarized"
TESTED = [layout for layout in LAYOUTS if layout != "pku_saferlhf"]  # PKU: the foreign course runs 01-05 on it
LINKED = ("models", "rm_adapter", "rm_merged")


@pytest.fixture(scope="module")
def course_folder(colab_course, tmp_path_factory):
    """The course's run folder with the merged reward model rebuilt once (Colab kept it on the wiped local disk)."""
    from helpers.merge_shards import ensure_merged_model
    from helpers.profiles import get_profile

    base, source = tmp_path_factory.mktemp("score_base"), Path(colab_course["run_dir"])
    for name in ("data", "metrics"):
        shutil.copytree(source / name, base / name)
    for name in ("models", "rm_adapter"):
        os.symlink(source / name, base / name)
    ensure_merged_model(base, get_profile("tiny"))
    return base


def _copy_run(course_folder: Path, run_dir: Path) -> Path:
    for name in ("data", "metrics"):
        shutil.copytree(course_folder / name, run_dir / name)
    for name in LINKED:
        os.symlink((course_folder / name).resolve(), run_dir / name)
    return run_dir


def _ran(*summaries) -> list[tuple[str, str]]:
    return [(n["notebook"], n["status"]) for s in summaries for n in s["notebooks"]]


@pytest.fixture(scope="module")
def layout_runs(course_folder, tmp_path_factory):
    """{layout: {"run_dir", "prepare": 01's summary, "score": 04's (SCORED layouts)}}."""
    runs = {}
    for layout in TESTED:
        run_dir = _copy_run(course_folder, tmp_path_factory.mktemp(f"score_{layout}"))
        path = write_layout(run_dir / (layout if layout == "uf_folder" else f"{layout}.jsonl"), layout)
        runs[layout] = {"run_dir": run_dir, "prepare": run_course(
            "tiny", run_dir, {"DATA_PATH": str(path), "UNPAIRED_PATH": None}, ["01"])}
        print(format_summary(runs[layout]["prepare"]))
        if layout in SCORED and runs[layout]["prepare"]["failure"] is None:
            runs[layout]["score"] = run_course("tiny", run_dir, {"SEED": SCORED[layout]}, ["04"])
            print(f"SEED {SCORED[layout]}: {format_summary(runs[layout]['score'])}")
    return runs


def _check_04_metrics(m: dict, test_pairs: int) -> None:
    assert m["test_pairs"] == test_pairs > 0
    assert m["pairs_length_balanced"] + m["pairs_not_length_balanced"] == test_pairs
    assert 0 <= m["calibration_ece"] <= 1 and 0 <= m["test_accuracy"] <= 1 and m["cli_returncode"] == 0


def test_01_on_each_public_layout_reads_every_pair(layout_runs):
    for layout, run in layout_runs.items():
        assert _ran(run["prepare"]) == [("01_prepare_data.ipynb", "ok")], format_summary(run["prepare"])
        prepared = run["prepare"]["metrics"]["01_prepare_data"]
        assert prepared["read"] == prepared["kept"] == prepared["train_pairs"] + prepared["test_pairs"] == 335, layout


@pytest.mark.parametrize("layout", SCORED)
def test_04_on_a_layout_and_seed(layout_runs, layout):
    run = layout_runs[layout]
    assert "score" in run, format_summary(run["prepare"])  # 01 failed: test_01_... says more
    assert _ran(run["score"]) == [("04_score_responses.ipynb", "ok")], format_summary(run["score"])
    _check_04_metrics(run["score"]["metrics"]["04_score_responses"],
                      run["prepare"]["metrics"]["01_prepare_data"]["test_pairs"])
    assert (run["run_dir"] / "figures" / "04_calibration.png").is_file()


def test_every_other_layout_holds_out_the_file_04_scored(layout_runs):
    """01 normalises and splits every layout alike: 04's run on SAME_AS's file is its run on theirs."""
    scored = (layout_runs[SAME_AS]["run_dir"] / "data" / "test.jsonl").read_bytes()
    for layout in set(TESTED) - set(SCORED):
        assert (layout_runs[layout]["run_dir"] / "data" / "test.jsonl").read_bytes() == scored, (
            f"{layout}'s held-out file differs from {SAME_AS}'s: add {layout} to SCORED so that 04 runs on it")
