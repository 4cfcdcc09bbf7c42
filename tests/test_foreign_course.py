"""Notebooks 01-05 on a learner's own file: the kit's pairs in the PKU-SafeRLHF layout, no kit metadata, bad rows.

The run is conftest.py's `foreign_course`: it reuses the tiny models notebook 00 built in the suite's Colab course
run and trains briefly (02: 8 steps, no storage experiment; 05: 4 steps, 4 prompts judged) to keep the suite
under 10 minutes. The
checks: every notebook completes on such a file, the counts add up, and the reward model still learns.
"""

import math

import pytest

pytestmark = pytest.mark.notebooks


def test_01_counts_every_row_of_the_foreign_file(foreign_course):
    m, data = foreign_course["metrics"]["01_prepare_data"], foreign_course["data"]
    assert m["read"] == data["good"] + len(data["bad"]) and m["kept"] == data["good"]
    assert m["dropped_by_reason"] == {reason: 1 for reason in data["bad"]}
    assert m["train_pairs"] + m["test_pairs"] == m["kept"] and m["test_pairs"] > 0
    assert m["unpaired_read"] == 0  # UNPAIRED_PATH None: KTO learns from the unpaired pairs alone
    assert m["unpaired_desirable"] == m["unpaired_undesirable"] == m["train_pairs"]


def test_the_reward_model_learns_from_it(foreign_course):
    m = foreign_course["metrics"]
    assert m["02_train_reward_model"]["eval_accuracy"] >= 0.65  # held-out prompts, chance 0.5
    assert m["03_merge_value_head"]["verified"] is True
    s = m["04_score_responses"]
    assert s["test_accuracy"] >= 0.65 and s["test_pairs"] == m["01_prepare_data"]["test_pairs"]
    assert s["pairs_length_balanced"] + s["pairs_not_length_balanced"] == s["test_pairs"]  # computed from tokens
    k = m["05_kto_unpaired"]
    assert all(math.isfinite(k[key]) for key in ("rm_reward_before", "rm_reward_after"))
    assert k["batches_with_both_labels"] == k["train_batches"] > 0
