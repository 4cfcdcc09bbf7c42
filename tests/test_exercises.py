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
