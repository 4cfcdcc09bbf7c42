"""Static checks of the committed notebooks: clean, parameterised, in sync with their sources."""

import json
import subprocess
import sys

import pytest

from helpers.env import KIT_ROOT
from helpers.runs import list_notebooks

NOTEBOOKS = list_notebooks()


def _cells(nb_path):
    return json.loads(nb_path.read_text(encoding="utf-8"))["cells"]


def test_the_course_has_notebooks_in_numeric_order():
    names = [nb.name for nb in NOTEBOOKS]
    assert names and names[0] == "00_setup.ipynb"
    assert [n[:2] for n in names] == sorted(n[:2] for n in names)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(nb):
    dirty = [i for i, c in enumerate(_cells(nb)) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]
    assert not dirty, f"{nb.name}: outputs in cells {dirty}; rebuild with tools/nbsync.py"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_with_the_common_names(nb):
    tagged = [c for c in _cells(nb) if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: {len(tagged)} cells tagged 'parameters' (papermill needs exactly one)"
    source = "".join(tagged[0]["source"])
    for name in ("PROFILE", "RUN_DIR", "SEED"):
        assert f"{name} = " in source, f"{nb.name}: parameters cell lacks {name}"
    assert "REWARD_LAB_PROFILE" in source


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_kernelspec_is_python3(nb):
    assert json.loads(nb.read_text())["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_error_demos_show_their_error_and_are_checked_by_nbval(nb):
    """A cell left raising makes plain `papermill` exit non-zero, and nbval's raises-marker passes even when
    nothing raises: demos use `with expect_error(...)`, whose printed message nbval compares exactly."""
    for cell in _cells(nb):
        source = "".join(cell["source"])
        assert "raises-exception" not in cell["metadata"].get("tags", []), f"{nb.name}: use expect_error instead"
        assert "NBVAL_RAISES_EXCEPTION" not in source, f"{nb.name}: use expect_error instead"
        if "with expect_error(" in source:
            assert source.startswith("# NBVAL_CHECK_OUTPUT"), f"{nb.name}: error demo without # NBVAL_CHECK_OUTPUT"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_setup_cell_and_ends_with_what_you_have(nb):
    cells = _cells(nb)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "setup(" in "".join(code[0]["source"])
    assert "colab.research.google.com" in "".join(cells[0]["source"])
    assert "What you have now" in "".join(cells[-1]["source"])


def test_notebooks_match_their_sources():
    result = subprocess.run([sys.executable, str(KIT_ROOT / "tools" / "nbsync.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


TRL_CONFIGS = ("RewardConfig", "KTOConfig", "GRPOConfig")


def _trl_config_calls(source: str):
    import ast
    import re

    python = re.sub(r"^(\s*)[!%].*$", r"\1pass", source, flags=re.M)  # shell and magic lines are not Python
    for node in ast.walk(ast.parse(python)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in TRL_CONFIGS:
            yield node


@pytest.mark.parametrize("src", sorted((KIT_ROOT / "notebooks" / "src").glob("0[256]_*.py")), ids=lambda p: p.stem)
def test_trl_configs_checkpoint_reentrant(src):
    """Measured on the 8B shape (H200, notebook 02's step): transformers 5.23's default use_reentrant=False peaked at
    31.2 GiB, reentrant at 12.8 (benchmarks/results/rm_train_llama3-8b_trainer*_cuda_2026-12-04.json)."""
    import ast

    calls = list(_trl_config_calls(src.read_text(encoding="utf-8")))
    assert calls, f"{src.name}: no {TRL_CONFIGS} call found"
    for call in calls:
        kwargs = {k.arg: k.value for k in call.keywords}
        given = kwargs.get("gradient_checkpointing_kwargs")
        assert given is not None and ast.literal_eval(given) == {"use_reentrant": True}, (
            f"{src.name}, line {call.lineno}: {call.func.id} without gradient_checkpointing_kwargs="
            "{'use_reentrant': True}")


# Statements a notebook once made that the installed libraries or the kit's own runs refute (issue 23), with the
# evidence; the text that replaced each is written from the run's numbers or from the library source.
REFUTED = [
    ("03_merge_value_head", "Three readers get a different number", "its list names two: transformers 4.x and vLLM"),
    ("03_merge_value_head", "notebooks 04 and 05 run in runtimes of their own", "06 rebuilds rm_merged/ as well"),
    ("03_merge_value_head", "here the rejected ones are longer and ramble",
     "the rejected answer is longer in 27 of the 79 held-out pairs (tokens)"),
    ("01_prepare_data", "Attention memory grows with its square",
     "transformers 5.23 defaults to sdpa (modeling_utils.py:1846), which stores no length x length scores"),
    ("05_kto_unpaired", "`rewards/chosen` (desirable rows) should rise",
     "KTO's loss does not need it, and the tiny runs' rewards/chosen wanders around 0"),
    ("05_kto_unpaired", "it grows as the policy drifts from the reference",
     "kl is a per-batch estimate clamped at 0 (trl kto_trainer.py:1444), not a running drift"),
]


@pytest.mark.parametrize("name, statement, evidence", REFUTED, ids=[f"{n[:2]}-{s[:24]}" for n, s, _ in REFUTED])
def test_refuted_statements_stay_out(name, statement, evidence):
    nb = KIT_ROOT / "notebooks" / f"{name}.ipynb"
    text = " ".join(" ".join("".join(c["source"]).split()) for c in _cells(nb) if c["cell_type"] == "markdown")
    assert statement not in text, f"{nb.name} says {statement!r}, but {evidence}"
