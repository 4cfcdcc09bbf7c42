import json

import nbformat
import pytest

from helpers.env import KitError
from helpers.runs import collect_metrics, format_summary, main, prepare_run_dir, run_course, save_metrics


def _notebook(path, *sources, parameters="PROFILE = 'x'\nRUN_DIR = ''\nSEED = 0"):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *[nbformat.v4.new_code_cell(s) for s in sources]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_prepare_run_dir_creates_the_layout(tmp_path):
    run_dir = prepare_run_dir(tmp_path / "run")
    assert (run_dir / "metrics").is_dir() and (run_dir / "figures").is_dir()


def test_unwritable_run_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(KitError, match=r"RUN_DIR '.*a_file/run' is not writable.*Set RUN_DIR to a folder"):
        prepare_run_dir(blocker / "run")


def test_the_write_probe_follows_no_planted_symlink(tmp_path):
    """A shared RUN_DIR where someone planted `.write_test` -> another file: the probe must not write through it."""
    victim, run = tmp_path / "victim.txt", tmp_path / "run"
    victim.write_text("precious")
    run.mkdir()
    (run / ".write_test").symlink_to(victim)
    prepare_run_dir(run)
    assert victim.read_text() == "precious" and (run / ".write_test").is_symlink()
    assert sorted(p.name for p in run.iterdir()) == [".write_test", "figures", "metrics"]  # the probe is removed


def test_metrics_round_trip(tmp_path):
    save_metrics(tmp_path, "00_setup", {"ready": True, "名": "ok"})
    assert collect_metrics(tmp_path) == {"00_setup": {"ready": True, "名": "ok"}}


def test_runner_passes_parameters_and_keeps_executed_notebooks(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_first.ipynb", "import json, pathlib\n"
              "pathlib.Path(RUN_DIR, 'metrics', '00_first.json').write_text(json.dumps({'p': PROFILE, 's': SEED}))")
    summary = run_course("tiny", tmp_path / "run", {"SEED": 5}, notebook_dir=nbs)
    assert summary["failure"] is None
    assert summary["metrics"] == {"00_first": {"p": "tiny", "s": 5}}
    assert (tmp_path / "run" / "notebooks" / "00_first.ipynb").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["notebooks"][0]["status"] == "ok"


def test_runner_stops_at_a_raising_cell_and_names_notebook_and_cell(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_ok.ipynb", "x = 1")
    _notebook(nbs / "01_broken.ipynb", "y = 2", "raise ValueError('the data file is empty')")
    _notebook(nbs / "02_never.ipynb", "z = 3")
    summary = run_course("tiny", tmp_path / "run", notebook_dir=nbs)
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "FAILED"]
    failure = summary["failure"]
    assert failure["notebook"] == "01_broken.ipynb" and failure["cell_index"] == 3  # after injected parameters
    assert failure["error"] == "ValueError: the data file is empty"
    text = format_summary(summary)
    assert "FAILED in 01_broken.ipynb, cell 3" in text and "raise ValueError" in text


def test_cli_exit_codes(tmp_path, capsys, monkeypatch):
    assert main(["--profile", "nope", "--run-dir", str(tmp_path)]) == 2
    assert "Valid profiles: 'tiny', 'smol', 'llama3-8b'" in capsys.readouterr().err
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_broken.ipynb", "1 / 0")
    monkeypatch.setattr("helpers.runs.NOTEBOOK_DIR", nbs)
    import helpers.runs as runs

    monkeypatch.setattr(runs, "list_notebooks", lambda prefixes, notebook_dir=nbs: sorted(nbs.glob("*.ipynb")))
    assert main(["--run-dir", str(tmp_path / "run")]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_report_and_metrics_json_are_written_and_runs_compare(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "02_train_reward_model.ipynb", "import json, pathlib\n"
              "pathlib.Path(RUN_DIR, 'metrics', '02_train_reward_model.json').write_text("
              "json.dumps({'eval_accuracy': SEED / 10, 'quantization': '8bit'}))")
    runs = [run_course("tiny", tmp_path / f"run{seed}", {"SEED": seed}, notebook_dir=nbs) for seed in (7, 8)]
    report = (tmp_path / "run7" / "report.md").read_text()
    assert "| 02_train_reward_model.ipynb | ok |" in report and "eval_accuracy 0.7" in report
    assert json.loads((tmp_path / "run7" / "metrics.json").read_text())["02_train_reward_model"]["eval_accuracy"] == 0.7
    assert main(["--compare", runs[0]["run_dir"], runs[1]["run_dir"]]) == 0
    out = capsys.readouterr().out
    assert "02_train_reward_model.eval_accuracy" in out and "+0.1" in out


def test_a_failing_parameter_is_named_in_the_report(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_check.ipynb", "if SEED < 0:\n    raise ValueError(f'SEED must be >= 0, got {SEED}')")
    summary = run_course("tiny", tmp_path / "run", {"SEED": -1}, notebook_dir=nbs)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "status: **FAILED**" in report and "`00_check.ipynb`, cell 2" in report
    assert "ValueError: SEED must be >= 0, got -1" in report and summary["failure"]["notebook"] == "00_check.ipynb"


def test_parameters_file_and_pairs(tmp_path):
    from helpers.parameters import load_parameters as _load_parameters

    params_file = tmp_path / "p.yaml"
    params_file.write_text("SEED: 3\nRESUME: true\n")
    assert _load_parameters(str(params_file), [["MAX_STEPS", "10"]]) == {"SEED": 3, "RESUME": True, "MAX_STEPS": 10}


def test_relative_data_paths_are_made_absolute_for_notebooks_that_run_elsewhere(tmp_path, monkeypatch):
    from helpers.parameters import absolute_paths as _absolute_paths

    (tmp_path / "mine.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    out = _absolute_paths({"DATA_PATH": "mine.jsonl", "UNPAIRED_PATH": None, "SEED": 7,
                           "OTHER_PATH": "org/hub-dataset", "NOTE": "mine.jsonl"})
    assert out == {"DATA_PATH": str(tmp_path / "mine.jsonl"), "UNPAIRED_PATH": None, "SEED": 7,
                   "OTHER_PATH": "org/hub-dataset", "NOTE": "mine.jsonl"}


@pytest.mark.parametrize(("parameters", "match"), [
    ({"SEEED": 7}, r"unknown parameter 'SEEED' \(did you mean 'SEED'\?\)\. The notebooks to run take: 00_first: "
                   r"PROFILE, RUN_DIR, SEED, RATE"),
    ({"SEED": "abc"}, r"parameter SEED: expected int \(its default in 00_first is 0\), got 'abc'"),
    ({"RATE": True}, r"parameter RATE: expected float"),
])
def test_runner_refuses_bad_parameters_before_running_anything(tmp_path, capsys, parameters, match):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_first.ipynb", "open('ran', 'w').write('x')",
              parameters="PROFILE = 'x'\nRUN_DIR = ''\nSEED = 0\nRATE = 0.5")
    with pytest.raises(KitError, match=match):
        run_course("tiny", tmp_path / "run", parameters, notebook_dir=nbs)
    assert not (tmp_path / "run").exists() and not (nbs / "ran").exists()


def test_parameters_are_converted_to_their_defaults_type(tmp_path):
    from helpers.parameters import check_parameters

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_first.ipynb", parameters="SEED = 0\nRATE = 0.5\nNAME = 'a'\nLIMIT = None\nPATH = str(1)")
    assert check_parameters({"SEED": 3, "RATE": 1, "NAME": 8, "LIMIT": 5, "PATH": None}, [nbs / "00_first.ipynb"]) \
        == {"SEED": 3, "RATE": 1.0, "NAME": "8", "LIMIT": 5, "PATH": None}


def test_the_cli_exits_2_on_a_typo(capsys):
    assert main(["--profile", "tiny", "--notebooks", "00", "-p", "SEEED", "7"]) == 2
    assert "did you mean 'SEED'" in capsys.readouterr().err


# --- issue 23: the runner's command line refuses what it cannot do, before anything runs ---------------------------

def _three_notebooks(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name in ("00_first", "01_second", "02_third"):
        _notebook(nbs / f"{name}.ipynb", "x = 1")
    return nbs


@pytest.mark.parametrize(("selection", "expected"), [
    (["1"], ["01_second"]), (["01"], ["01_second"]), (["2", "0"], ["00_first", "02_third"]),
    (["01_sec"], ["01_second"]), (["02_third.ipynb", "2"], ["02_third"]),
])
def test_notebooks_are_chosen_by_number_or_name_prefix(tmp_path, selection, expected):
    from helpers.runs import list_notebooks

    assert [nb.stem for nb in list_notebooks(selection, _three_notebooks(tmp_path))] == expected


@pytest.mark.parametrize(("selection", "match"), [
    (["99"], r"--notebooks 99: no notebook matches\. The notebooks are: 00_first, 01_second, 02_third"),
    (["1", "2x"], r"--notebooks 2x: no notebook matches\. The notebooks are: 00_first, 01_second, 02_third"),
    (["0_"], r"--notebooks 0_: no notebook matches"),
])
def test_an_unknown_notebook_is_refused_before_anything_runs(tmp_path, selection, match):
    nbs = _three_notebooks(tmp_path)
    with pytest.raises(KitError, match=match):
        run_course("tiny", tmp_path / "run", notebook_dir=nbs, prefixes=selection)
    assert not (tmp_path / "run").exists()


def test_a_selection_matching_two_notebooks_is_refused(tmp_path):
    from helpers.runs import list_notebooks

    nbs = _three_notebooks(tmp_path)
    _notebook(nbs / "01_other.ipynb", "x = 1")
    with pytest.raises(KitError, match=r"--notebooks 1 matches 2 notebooks \(01_other, 01_second\)\. "
                                      r"Give a longer name prefix, e.g\. 01_other"):
        list_notebooks(["1"], nbs)


def test_the_cli_exits_2_on_an_unknown_notebook(tmp_path, capsys):
    assert main(["--notebooks", "99", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--notebooks 99: no notebook matches" in err and "00_setup, 01_prepare_data" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("text", "match"), [
    (None, r"-f .*missing\.yaml: cannot read the parameters file \(No such file or directory\)"),
    ("SEED: 7\nMAX_STEPS: [1, 2\n", r"-f .*p\.yaml, line 3, column 1: not valid YAML"),
    ("SEED: 7\n  MAX_STEPS: 3\n", r"-f .*p\.yaml, line 2, column 12: not valid YAML \(mapping values are not allowed"),
    ("- SEED\n- 7\n", r"-f .*p\.yaml: expected NAME: value lines \(a YAML mapping\), got a list"),
    ("7: SEED\n", r"-f .*p\.yaml: parameter names are text, got 7 \(int\)"),
])
def test_a_bad_parameters_file_exits_2_naming_the_file_and_line(tmp_path, capsys, text, match):
    import re

    path = tmp_path / ("missing.yaml" if text is None else "p.yaml")
    if text is not None:
        path.write_text(text)
    assert main(["--notebooks", "00", "-f", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_a_parameter_value_that_is_not_yaml_exits_2_naming_it(tmp_path, capsys):
    assert main(["--notebooks", "00", "-p", "SEED", "[1", "--run-dir", str(tmp_path / "run")]) == 2
    assert "-p SEED '[1': not a YAML value" in capsys.readouterr().err


def _finished_run(tmp_path, name, metrics='{"00_setup": {"device": "cpu"}}'):
    run = tmp_path / name
    run.mkdir()
    if metrics is not None:
        (run / "metrics.json").write_text(metrics)
    return run


@pytest.mark.parametrize(("metrics", "match"), [
    (None, r"--compare: .*runB has no metrics\.json\. A run writes it when it ends"),
    ('{"00_setup": {"device": "cp', r"--compare: .*runB/metrics\.json is not valid JSON \(Unterminated string "
                                     r"starting at line 1, column 25\): it was cut off"),
    ('["00_setup"]', r"--compare: .*runB/metrics\.json is not \{notebook: \{metric: value\}\}: the file holds a list"),
    ('{"00_setup": 3}', r"--compare: .*runB/metrics\.json is not \{notebook: \{metric: value\}\}: '00_setup' is a int"),
])
def test_compare_names_the_run_and_what_is_missing(tmp_path, capsys, metrics, match):
    import re

    a, b = _finished_run(tmp_path, "runA"), _finished_run(tmp_path, "runB", metrics)
    assert main(["--compare", str(a), str(b)]) == 2
    assert re.search(match, capsys.readouterr().err)


def test_compare_names_a_folder_that_does_not_exist(tmp_path, capsys):
    a = _finished_run(tmp_path, "runA")
    assert main(["--compare", str(tmp_path / "nope"), str(a)]) == 2
    assert f"--compare: {tmp_path / 'nope'} is not a folder" in capsys.readouterr().err


def _writes_run_dir(nbs):
    _notebook(nbs / "00_where.ipynb", "import pathlib\npathlib.Path(RUN_DIR, 'here').write_text(RUN_DIR)")


def test_p_run_dir_alone_is_the_run_dir_resolved_here(tmp_path, monkeypatch):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _writes_run_dir(nbs)
    monkeypatch.chdir(tmp_path)
    summary = run_course("tiny", None, {"RUN_DIR": "runs/mine"}, notebook_dir=nbs)
    mine = tmp_path / "runs" / "mine"
    assert summary["run_dir"] == str(mine) and summary["parameters"]["RUN_DIR"] == str(mine)
    assert (mine / "here").read_text() == str(mine) and (mine / "report.md").exists()


def test_p_run_dir_equal_to_run_dir_is_accepted(tmp_path, monkeypatch):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _writes_run_dir(nbs)
    monkeypatch.chdir(tmp_path)
    summary = run_course("tiny", tmp_path / "mine", {"RUN_DIR": "mine"}, notebook_dir=nbs)
    assert summary["failure"] is None and (tmp_path / "mine" / "here").read_text() == str(tmp_path / "mine")


@pytest.mark.parametrize(("args", "match"), [
    (["-p", "RUN_DIR", "runs/mine", "--run-dir", "X"], r"RUN_DIR is given twice: --run-dir X and -p RUN_DIR "
                                                       r"runs/mine\. Give it once"),
    (["-p", "PROFILE", "llama3-8b", "--profile", "tiny"], r"PROFILE is given twice: --profile tiny and -p PROFILE "
                                                          r"llama3-8b\. Give it once"),
])
def test_two_different_run_dirs_or_profiles_exit_2(tmp_path, capsys, monkeypatch, args, match):
    import re

    import helpers.runs as runs

    nbs = tmp_path.parent / f"{tmp_path.name}_nbs"
    nbs.mkdir()
    _notebook(nbs / "00_first.ipynb", "x = 1")
    monkeypatch.setattr(runs, "list_notebooks", lambda prefixes, notebook_dir=nbs: sorted(nbs.glob("*.ipynb")))
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("parameters", "match"), [
    ({"THRESHOLD": "four"}, r"parameter THRESHOLD: expected float or None \(declared in 00_first: THRESHOLD: float = "
                            r"None\), got 'four' \(str\)\. Fix: give a value of type float, e.g\. -p THRESHOLD 0\.5"),
    ({"LIMIT": 2.5}, r"parameter LIMIT: expected int or None .*got 2\.5 \(float\)"),
    ({"SPLIT": ["a"]}, r"parameter SPLIT: expected str or None"),
    ({"SEED": None}, r"parameter SEED: expected int \(its default in 00_first is 0\), got None"),
])
def test_parameters_with_a_none_default_are_checked_against_their_declared_type(tmp_path, parameters, match):
    from helpers.parameters import check_parameters

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_first.ipynb", parameters="SEED = 0\nLIMIT: int = None  # at most\nTHRESHOLD: float = None\n"
              "SPLIT: str = None")
    with pytest.raises(KitError, match=match):
        check_parameters(parameters, [nbs / "00_first.ipynb"])
    assert check_parameters({"LIMIT": 3, "THRESHOLD": 4, "SPLIT": 1, "SEED": 2}, [nbs / "00_first.ipynb"]) \
        == {"LIMIT": 3, "THRESHOLD": 4.0, "SPLIT": "1", "SEED": 2}
    assert check_parameters({"LIMIT": None, "THRESHOLD": None}, [nbs / "00_first.ipynb"]) \
        == {"LIMIT": None, "THRESHOLD": None}


def test_rating_threshold_four_is_refused_before_notebook_01_runs():
    from helpers.parameters import check_parameters
    from helpers.runs import NOTEBOOK_DIR

    with pytest.raises(KitError, match=r"parameter RATING_THRESHOLD: expected float or None .*got 'four' \(str\)"):
        check_parameters({"RATING_THRESHOLD": "four"}, [NOTEBOOK_DIR / "01_prepare_data.ipynb"])


def test_every_course_parameter_with_a_none_default_declares_its_type():
    import papermill as pm

    from helpers.runs import list_notebooks

    undeclared = [f"{nb.stem}: {name}" for nb in list_notebooks() for name, p in pm.inspect_notebook(str(nb)).items()
                  if p["default"] == "None" and p["inferred_type_name"] == "None"]
    assert not undeclared, f"declare a type (NAME: int = None) for {undeclared}"
