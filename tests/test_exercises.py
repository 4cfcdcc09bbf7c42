"""Every "Try it" check cell, run as the notebook holds it: right answer passes, wrong one fails, none says so.

The cells are taken from the notebooks themselves (notebooks/*.ipynb) and run on the Colab course's run folder, with
`answer = None` replaced by the answer: notebooks/solutions.py's (what an instructor hands out) or a wrong one.
"""

import contextlib
import io
import re
import sys

import nbformat
import pytest

from helpers.env import KIT_ROOT
from helpers.exercises import EXERCISES, ExerciseNotDone
from helpers.profiles import get_profile

sys.path.insert(0, str(KIT_ROOT / "notebooks"))
from solutions import SOLUTIONS  # noqa: E402

WRONG = {"00.1": "bfloat16", "00.2": 8.0, "01.1": 640, "02.1": 0.5, "02.2": 0, "03.1": 0.0,
         "04.1": "everyday-008", "05.1": 1.0, "06.1": 0.0, "06.2": 0.0}


def _check_cell(exercise_id: str) -> str:
    cells = [c.source for path in sorted((KIT_ROOT / "notebooks").glob("0*.ipynb"))
             for c in nbformat.read(path, as_version=4).cells
             if c.cell_type == "code" and f'check_exercise("{exercise_id}"' in c.source]
    assert len(cells) == 1, f"exercise {exercise_id}: {len(cells)} check cells"
    assert re.search(r"^answer = None ", cells[0], re.M), cells[0]
    return cells[0]


def _run(cell: str, answer, run_dir) -> str:
    source = re.sub(r"^answer = None .*$", f"answer = {answer!r}", cell, count=1, flags=re.M)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<check cell>", "exec"), {"run_dir": run_dir, "profile": get_profile("tiny")})
    return out.getvalue()


def test_every_exercise_has_a_solution_a_wrong_answer_and_one_check_cell():
    assert set(EXERCISES) == set(SOLUTIONS) == set(WRONG)
    assert {e.split(".")[0] for e in EXERCISES} == {f"0{i}" for i in range(7)}  # every notebook, 00 included


@pytest.mark.parametrize("exercise_id", sorted(EXERCISES))
def test_check_cell_passes_the_solution_fails_a_wrong_answer_and_flags_none(exercise_id, colab_course):
    run_dir, cell = colab_course["run_dir"], _check_cell(exercise_id)
    right = SOLUTIONS[exercise_id](run_dir, get_profile("tiny"))
    assert f"Exercise {exercise_id}: right." in _run(cell, right, run_dir)
    with pytest.raises(ExerciseNotDone):
        _run(cell, WRONG[exercise_id], run_dir)
    untouched = _run(cell, None, run_dir)
    assert "not attempted yet" in untouched and "right" not in untouched


def _checker(exercise_id: str):
    return EXERCISES[exercise_id][1]


@pytest.mark.parametrize("answer", ["fp16", "float16", "FP16", " fp16 ", "torch.float16", "half"])
def test_00_1_accepts_fp16_as_a_learner_writes_it(answer):
    import torch

    for form in (answer, torch.float16):
        assert "fp16" in _checker("00.1")(form, None, None)


@pytest.mark.parametrize("answer", ["bfloat16", "bf16", "fp32", "float32", "float", "fp8", "16", ""])
def test_00_1_still_rejects_other_dtypes(answer):
    import torch

    for form in (answer, torch.bfloat16, torch.float32):
        with pytest.raises(ExerciseNotDone, match="compute capability 7.5"):
            _checker("00.1")(form, None, None)


@pytest.fixture(scope="module")
def length_run(tiny_rm_base, kit_pairs, tmp_path_factory):
    """A RUN_DIR with the tiny reward base and a few training pairs: what exercise 01.1 reads."""
    import json
    import os

    run_dir = tmp_path_factory.mktemp("run_0101")
    (run_dir / "models").mkdir()
    os.symlink(tiny_rm_base, run_dir / "models" / "tiny-llama3")
    (run_dir / "data").mkdir()
    rows = kit_pairs["train"].select(range(12)).to_list()
    (run_dir / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return run_dir, SOLUTIONS["01.1"](run_dir, get_profile("tiny"))


def test_01_1_accepts_the_right_length_as_int_float_or_numpy(length_run):
    import numpy as np

    run_dir, right = length_run
    for form in (right, float(right), np.int64(right), np.float64(right)):
        assert f"{right} keeps every training pair" in _checker("01.1")(form, run_dir, get_profile("tiny"))


def test_01_1_still_rejects_a_wrong_length(length_run):
    run_dir, right = length_run
    cases = {right - 64: "still drops", right + 64: "find the smallest", right + 0.5: "not a multiple of 64",
             right - 1: "not a multiple of 64", str(right): "not a number", True: "not a number"}
    for answer, match in cases.items():
        with pytest.raises(ExerciseNotDone, match=match):
            _checker("01.1")(answer, run_dir, get_profile("tiny"))


def _advantage(rewards, ddof=1):
    import numpy as np

    rewards = np.asarray(rewards, float)
    return float((rewards[0] - rewards.mean()) / (rewards.std(ddof=ddof) + 1e-4))


# rewards as the tiny and the 8B reward models give them: spread 0.05 and 2
@pytest.mark.parametrize("rewards", [[0.03141, -0.01203, 0.05927, 0.00876], [1.84213, -0.52871, 0.90344, 2.21759]])
def test_06_1_accepts_the_method_on_rewards_read_to_three_decimals(rewards, tmp_path):
    import json

    import numpy as np

    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "06_rl_with_reward_model.json").write_text(
        json.dumps({"rm_before_per_prompt": rewards + [0.5, 0.7]}))
    check = _checker("06.1")
    right = _advantage(rewards)
    for decimals in (3, 4, 6):  # the method on the rewards as the learner copied them
        read = _advantage([round(r, decimals) for r in rewards])
        for answer in (read, round(read, 3), round(read, 2) if decimals == 6 else read):
            assert "A_1 = " in check(answer, tmp_path, None), (decimals, answer, right)
    wrong = {"zero": 0.0, "sign": -right, "ddof 0 (numpy's default)": _advantage(rewards, ddof=0),
             "no mean subtracted": _advantage([rewards[0], *rewards[1:]]) + float(np.mean(rewards)) / float(np.std(
                 rewards, ddof=1)),
             "the 2nd answer's": _advantage([rewards[1], rewards[0], *rewards[2:]])}
    for name, answer in wrong.items():
        with pytest.raises(ExerciseNotDone, match="is not it"):
            check(answer, tmp_path, None)
            pytest.fail(f"{name} ({answer}) accepted; right {right}")
