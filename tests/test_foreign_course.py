"""Notebooks 01-05 on a learner's own file: the kit's pairs in the PKU-SafeRLHF layout, no kit metadata, bad rows.

The run reuses the tiny models notebook 00 built in the suite's Colab course run (`colab_course`), and trains
briefly (02: 32 steps, no storage experiment; 05: 8 steps) to keep the suite under 10 minutes; the checks are
that every notebook completes on such a file, that the counts add up, and that the reward model still learns.
"""

import math
import os
from pathlib import Path

import pytest
from foreign_data import write_foreign_pairs

from helpers.runs import format_summary, run_course

PARAMETERS = {"01": {"UNPAIRED_PATH": None}, "02": {"MAX_STEPS": 32, "STORAGE_STEPS": 0}, "03": {}, "04": {},
              "05": {"MAX_STEPS": 8}}


@pytest.fixture(scope="module")
def foreign_run(colab_course, tmp_path_factory):
    work = tmp_path_factory.mktemp("foreign")
    data = write_foreign_pairs(work / "pku_pairs.jsonl")
    run_dir = work / "run"
    (run_dir / "models").mkdir(parents=True)
    for model in (Path(colab_course["run_dir"]) / "models").iterdir():
        os.symlink(model, run_dir / "models" / model.name)
    summaries = []
    for prefix, params in PARAMETERS.items():
        if prefix == "01":
            params = {**params, "DATA_PATH": str(work / "pku_pairs.jsonl")}
        summary = run_course("tiny", run_dir, params, [prefix])
        summaries.append(summary)
        assert summary["failure"] is None, format_summary(summary)
    return {"data": data, "metrics": summaries[-1]["metrics"],
            "seconds": {n["notebook"]: n["seconds"] for s in summaries for n in s["notebooks"]}}


def test_01_counts_every_row_of_the_foreign_file(foreign_run):
    m, data = foreign_run["metrics"]["01_prepare_data"], foreign_run["data"]
    assert m["read"] == data["good"] + len(data["bad"]) and m["kept"] == data["good"]
    assert m["dropped_by_reason"] == {reason: 1 for reason in data["bad"]}
    assert m["train_pairs"] + m["test_pairs"] == m["kept"] and m["test_pairs"] > 0
    assert m["unpaired_read"] == 0  # UNPAIRED_PATH None: KTO learns from the unpaired pairs alone
    assert m["unpaired_desirable"] == m["unpaired_undesirable"] == m["train_pairs"]


def test_the_reward_model_learns_from_it(foreign_run):
    m = foreign_run["metrics"]
    assert m["02_train_reward_model"]["eval_accuracy"] >= 0.65  # held-out prompts, chance 0.5
    assert m["03_merge_value_head"]["verified"] is True
    s = m["04_score_responses"]
    assert s["test_accuracy"] >= 0.65 and s["test_pairs"] == m["01_prepare_data"]["test_pairs"]
    assert s["pairs_length_balanced"] + s["pairs_not_length_balanced"] == s["test_pairs"]  # computed from tokens
    k = m["05_kto_unpaired"]
    assert all(math.isfinite(k[key]) for key in ("rm_reward_before", "rm_reward_after"))
    assert k["batches_with_both_labels"] == k["train_batches"] > 0
