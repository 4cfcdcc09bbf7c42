"""The "Try it" self-checks: each one passes on a right answer, fails on a wrong one and says so when untouched.

In a notebook:

    answer = None  # your answer
    check_exercise("01.1", answer, run_dir, profile)

`None` prints "not attempted yet" (the notebook still runs end to end under papermill); a wrong answer raises
`ExerciseNotDone` (an AssertionError) with a hint; a right one prints why it is right. The expected values come
from the run itself (its data, metrics and scores), so a check never passes on a number copied from elsewhere.
Worked solutions, as code an instructor can hand out and CI executes: `notebooks/solutions.py`.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

from .data_io import read_jsonl  # noqa: F401 (the name notebooks and solutions used)


class ExerciseNotDone(AssertionError):
    """A "Try it" answer that is not right yet; the message is the hint."""


def _metrics(run_dir, notebook: str) -> dict:
    return json.loads((Path(run_dir) / "metrics" / f"{notebook}.json").read_text())


# what a learner may call a dtype: the short names the prose and Trainer flags use (fp16=True), and torch's alias
DTYPE_NAMES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}


def _dtype_name(answer) -> str:
    """torch's name of a dtype given as torch.float16, a DtypeChoice, "torch.float16", "float16", "fp16" or "half"."""
    name = str(getattr(answer, "dtype", answer)).strip().lower().removeprefix("torch.")
    return DTYPE_NAMES.get(name, name)


def _is_number(answer) -> bool:
    """An int or float as a learner types it, numpy's included; not a bool or a string."""
    return isinstance(answer, numbers.Real) and not isinstance(answer, bool)


def t4_dtype(answer, run_dir, profile) -> str:
    from .env import pick_dtype

    right = _dtype_name(pick_dtype("cuda", compute_capability=(7, 5)))
    if _dtype_name(answer) != right:
        raise ExerciseNotDone(f"{answer!r} is not it: a T4 has compute capability 7.5. Read `pick_dtype`'s rule "
                              "in notebook 00's output: which dtype does a T4 emulate, and which does it run natively?")
    return (f"{right} (fp16): the T4's bf16 is emulated (slow), so the kit trains in fp16 there, with fp32 "
            "trainable weights")


def t4_train_memory(answer, run_dir, profile) -> str:
    from .resources import estimate_resources

    right = estimate_resources("llama3-8b", "T4")["02_train_reward_model"]["vram_gib"]
    if not isinstance(answer, int | float) or abs(answer - right) > 0.5:
        raise ExerciseNotDone(f"{answer!r} GiB is not within 0.5 GiB of the computed figure. Call "
                              "`estimate_resources('llama3-8b', 'T4')` and read notebook 02's `vram_gib`.")
    return f"{right} GiB of the T4's 15 GiB: computed from the 8B model's shapes, not measured"


def smallest_max_length(answer, run_dir, profile) -> str:
    from datasets import Dataset
    from transformers import AutoTokenizer

    from .audit import audit_lengths
    from .train import prepare_reward_tokenizer

    tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(profile.model_path("rm_base", run_dir)))
    train = Dataset.from_list(read_jsonl(Path(run_dir) / "data" / "train.jsonl"))
    if not _is_number(answer):
        raise ExerciseNotDone(f"{answer!r} is not a number: give a number of tokens, e.g. answer = 512.")
    if answer % 64:
        raise ExerciseNotDone(f"{answer!r} is not a multiple of 64 (GPU kernels like such sizes).")
    answer = int(answer)  # 704.0 is 704
    dropped = audit_lengths(train, tokenizer, answer)["over_max_length"]
    if dropped:
        raise ExerciseNotDone(f"max_length {answer} still drops {dropped} training pairs: go higher.")
    if answer > 64 and not audit_lengths(train, tokenizer, answer - 64)["over_max_length"]:
        raise ExerciseNotDone(f"max_length {answer} keeps every pair, but so does {answer - 64}: find the smallest.")
    return f"{answer} keeps every training pair and {answer - 64} does not"


def bt_probability(answer, run_dir, profile) -> str:
    right = 1 / (1 + math.exp(-1.0))
    if not isinstance(answer, int | float) or abs(answer - right) > 0.005:
        raise ExerciseNotDone(f"{answer!r} is not it. The Bradley-Terry model says P(chosen > rejected) = "
                              "sigma(r_chosen - r_rejected); here the difference is 1.0.")
    return f"sigma(1) = {right:.3f}: a reward gap of 1 means about 73% preference; 0 means a coin flip"


def misranked_pairs(answer, run_dir, profile) -> str:
    m = _metrics(run_dir, "02_train_reward_model")
    right = round((1 - m["eval_accuracy"]) * m["test_pairs"])
    if answer != right:
        raise ExerciseNotDone(f"{answer!r} is not it: the metrics give held-out accuracy {m['eval_accuracy']:.3f} "
                              f"on {m['test_pairs']} pairs. How many of those did the model rank the wrong way?")
    return f"{right} of {m['test_pairs']} held-out pairs ranked the wrong way"


def normalised_zero(answer, run_dir, profile) -> str:
    config = _metrics(run_dir, "03_merge_value_head")["normalization"]  # the mean/std written to config.json
    right = (0.0 - config["mean"]) / config["std"]
    if not isinstance(answer, int | float) or abs(answer - right) > 1e-3:
        raise ExerciseNotDone(f"{answer!r} is not it: OpenRLHF normalises as (r - mean) / std with `mean` and `std` "
                              "from rm_merged/config.json. What does a raw reward of 0 become?")
    return f"(0 - {config['mean']:.3f}) / {config['std']:.3f} = {right:+.3f}"


def worst_pair(answer, run_dir, profile) -> str:
    rows = read_jsonl(Path(run_dir) / "scores" / "test_scores.jsonl")
    worst = min(rows, key=lambda r: r["reward_chosen"] - r["reward_rejected"])
    if answer != worst["id"]:
        raise ExerciseNotDone(f"{answer!r} is not it: in RUN_DIR/scores/test_scores.jsonl find the pair with the "
                              "most negative reward_chosen - reward_rejected, and give its `id`.")
    gap = worst["reward_chosen"] - worst["reward_rejected"]
    return f"pair {worst['id']}: the rejected answer out-scores the chosen one by {-gap:.2f}. Read both: why?"


def kto_weight(answer, run_dir, profile) -> str:
    from .kto import WEIGHT_BAND

    labels = [bool(r["label"]) for r in read_jsonl(Path(run_dir) / "data" / "unpaired_train.jsonl")]
    n_d, n_u = sum(labels), len(labels) - sum(labels)
    ratio = answer * n_d / n_u if isinstance(answer, int | float) else float("nan")
    if not WEIGHT_BAND[0] <= ratio <= WEIGHT_BAND[1]:
        raise ExerciseNotDone(f"desirable_weight={answer!r} with undesirable_weight=1 gives "
                              f"lambda_D n_D / (lambda_U n_U) = {ratio:.3f} for n_D={n_d}, n_U={n_u}; the KTO paper "
                              f"(Eq. 8) asks for a value in [{WEIGHT_BAND[0]}, {WEIGHT_BAND[1]:.3f}].")
    return f"ratio {ratio:.3f} for n_D={n_d}, n_U={n_u}: inside the paper's band"


def grpo_advantage(answer, run_dir, profile) -> str:
    from .rl import group_advantages

    rewards = _metrics(run_dir, "06_rl_with_reward_model")["rm_before_per_prompt"][:4]
    right = float(group_advantages(rewards, 4)[0])
    # a learner copies the rewards as printed (3 decimals or more): each off by up to 5e-4, which the division by a
    # small std magnifies; accept that first-order error on top of the answer's own rounding (1e-3)
    steps = [[r + 5e-4 * (i == j) for j, r in enumerate(rewards)] for i in range(len(rewards))]
    tolerance = 1e-3 + sum(abs(float(group_advantages(s, 4)[0]) - right) for s in steps)
    if not _is_number(answer) or abs(answer - right) > tolerance:
        raise ExerciseNotDone(f"{answer!r} is not it: subtract the mean of the four rewards from the first, then "
                              "divide by their standard deviation (torch's default: n - 1 in the denominator) + 1e-4. "
                              f"Copy the rewards to 3 decimals or more (accepted: within {tolerance:.3g}).")
    return (f"A_1 = ({rewards[0]:.3f} - mean) / (std + 1e-4) = {right:+.3f}: the first answer is pushed "
            f"{'up' if right > 0 else 'down'} by how it compares with its group, whatever the rewards' scale")


def length_knob(answer, run_dir, profile) -> str:
    knobs = [k for k in _metrics(run_dir, "06_rl_with_reward_model")["knobs"] if k["knob"] == "length_penalty"]
    if not knobs:
        raise ExerciseNotDone("This run has no length-penalty knob run: keep {'length_penalty': 0.1} in KNOB_RUNS "
                              "and run notebook 06 again.")
    right = knobs[0]["delta_words"]
    if not isinstance(answer, int | float) or abs(answer - right) > 0.05:
        raise ExerciseNotDone(f"{answer!r} is not it: in the knob lines find length_penalty's Δwords (penalised run "
                              "minus the main run at the same step), or compute it from `effects`.")
    return (f"{right:+.1f} words with a penalty of {knobs[0]['value']} per word; was it bought with RM reward "
            "(ΔRM) or with the judges' scores?")


EXERCISES = {
    "00.1": ("the dtype the kit trains in on a free Colab T4", t4_dtype),
    "00.2": ("notebook 02's computed peak GPU memory on a T4 for llama3-8b, in GiB", t4_train_memory),
    "01.1": ("the smallest multiple of 64 that keeps every training pair", smallest_max_length),
    "02.1": ("P(chosen preferred) when its reward is 1.0 above the rejected one", bt_probability),
    "02.2": ("how many held-out pairs this run's model ranked the wrong way", misranked_pairs),
    "03.1": ("the normalised value of a raw reward of 0 for this run's model", normalised_zero),
    "04.1": ("the id of the held-out pair the reward model gets most wrong", worst_pair),
    "05.1": ("a desirable_weight (undesirable_weight 1) inside the KTO paper's band for this run's data", kto_weight),
    "06.1": ("GRPO's advantage of the first of four held-out answers treated as one group", grpo_advantage),
    "06.2": ("how many words the length penalty changed the held-out answers by", length_knob),
}


def check_exercise(exercise_id: str, answer, run_dir, profile=None) -> None:
    """Print the verdict on a "Try it" answer: why it is right, or that it is not attempted yet; raise when wrong.

    Raises:
        ExerciseNotDone: the answer is wrong; the message says where to look.
    """
    what, check = EXERCISES[exercise_id]
    if answer is None:
        print(f"Exercise {exercise_id} ({what}): not attempted yet. Set `answer` above and run this cell again.")
        return
    print(f"Exercise {exercise_id}: right. {check(answer, run_dir, profile)}")
