"""Worked solutions to the notebooks' "Try it" exercises: hand this file out after class.

Each function computes the answer from a finished run folder, the way a learner would in the notebook (the code
lines in each docstring are what to type there). CI runs every one of them through the notebook's own check
cell (tests/test_exercises.py), together with a wrong answer that must fail.

    .venv/bin/python notebooks/solutions.py runs/<run>     # print every answer for that run
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from helpers.data_io import read_jsonl
from helpers.exercises import _metrics


def solve_00_1(run_dir, profile):
    """`pick_dtype("cuda", compute_capability=(7, 5))`: a T4 has no native bf16, so fp16 (with fp32 master weights
    for what trains: LoRA and the head)."""
    return "float16"


def solve_00_2(run_dir, profile):
    """`estimate_resources("llama3-8b", "T4")["02_train_reward_model"]["vram_gib"]`: computed from the model's
    shapes (8-bit decoder, fp32 embeddings after `prepare_model_for_kbit_training`, LoRA + AdamW, activations)."""
    from helpers.resources import estimate_resources

    return estimate_resources("llama3-8b", "T4")["02_train_reward_model"]["vram_gib"]


def solve_01_1(run_dir, profile):
    """Read the `max` of the token-length table for the train split (the longer side of the longest pair) and round
    it up to a multiple of 64: `math.ceil(longest / 64) * 64`."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from helpers.audit import audit_lengths
    from helpers.train import prepare_reward_tokenizer

    tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(profile.model_path("rm_base", run_dir)))
    train = Dataset.from_list(read_jsonl(Path(run_dir) / "data" / "train.jsonl"))
    lengths = audit_lengths(train, tokenizer, 10**9)["lengths"]
    longest = max(*lengths["chosen_tokens"], *lengths["rejected_tokens"])
    return math.ceil(longest / 64) * 64


def solve_02_1(run_dir, profile):
    """P = sigma(r_chosen - r_rejected) = 1 / (1 + exp(-1)): the Bradley-Terry model the loss is the negative log
    of."""
    return 1 / (1 + math.exp(-1))


def solve_02_2(run_dir, profile):
    """`round((1 - eval_accuracy) * len(test))`, both printed by notebook 02 (and in its metrics file)."""
    m = json.loads((Path(run_dir) / "metrics" / "02_train_reward_model.json").read_text())
    return round((1 - m["eval_accuracy"]) * m["test_pairs"])


def solve_03_1(run_dir, profile):
    """`(0 - config["mean"]) / config["std"]` with the `config` notebook 03 read back from rm_merged/config.json."""
    config = json.loads((Path(run_dir) / "metrics" / "03_merge_value_head.json").read_text())["normalization"]
    return (0 - config["mean"]) / config["std"]


def solve_04_1(run_dir, profile):
    """`min(rows, key=lambda r: r["reward_chosen"] - r["reward_rejected"])["id"]` over
    RUN_DIR/scores/test_scores.jsonl (or the `scores` table notebook 04 shows)."""
    rows = read_jsonl(Path(run_dir) / "scores" / "test_scores.jsonl")
    return min(rows, key=lambda r: r["reward_chosen"] - r["reward_rejected"])["id"]


def solve_05_1(run_dir, profile):
    """`kto_class_weights(n_D, n_U)[0]` with the label counts notebook 05 prints: it aims at 7/6, the middle of the
    paper's band [1, 4/3]; any weight with lambda_D n_D / n_U in the band is right."""
    from helpers.kto import kto_class_weights

    labels = [bool(r["label"]) for r in read_jsonl(Path(run_dir) / "data" / "unpaired_train.jsonl")]
    n_d, n_u = sum(labels), len(labels) - sum(labels)
    w_d, w_u = kto_class_weights(n_d, n_u)
    return w_d / w_u


def solve_06_1(run_dir, profile):
    """(r_1 - mean) / (std + 1e-4) over the first four held-out rewards before training, std with n - 1 (torch's)."""
    import numpy as np

    rewards = np.array(_metrics(run_dir, "06_rl_with_reward_model")["rm_before_per_prompt"][:4])
    return float((rewards[0] - rewards.mean()) / (rewards.std(ddof=1) + 1e-4))


def solve_06_2(run_dir, profile):
    """The length-penalty run's mean words minus the main run's at the same step: its Δwords in the knob lines."""
    metrics = _metrics(run_dir, "06_rl_with_reward_model")
    return next(k["delta_words"] for k in metrics["knobs"] if k["knob"] == "length_penalty")


SOLUTIONS = {"00.1": solve_00_1, "00.2": solve_00_2, "01.1": solve_01_1, "02.1": solve_02_1, "02.2": solve_02_2,
             "03.1": solve_03_1, "04.1": solve_04_1, "05.1": solve_05_1, "06.1": solve_06_1, "06.2": solve_06_2}

if __name__ == "__main__":
    from helpers.profiles import get_profile

    run = Path(sys.argv[1])
    name = json.loads((run / "metrics" / "00_setup.json").read_text()).get("profile", "tiny")
    for exercise, solve in SOLUTIONS.items():
        print(f"{exercise}: {solve(run, get_profile(name))!r}")
