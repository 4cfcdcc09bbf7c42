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
    assert "Valid profiles: 'tiny', 'llama3-8b'" in capsys.readouterr().err
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
    from helpers.runs import _load_parameters

    params_file = tmp_path / "p.yaml"
    params_file.write_text("SEED: 3\nRESUME: true\n")
    assert _load_parameters(str(params_file), [["MAX_STEPS", "10"]]) == {"SEED": 3, "RESUME": True, "MAX_STEPS": 10}


def test_relative_data_paths_are_made_absolute_for_notebooks_that_run_elsewhere(tmp_path, monkeypatch):
    from helpers.runs import _absolute_paths

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
    from helpers.runs import check_parameters

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_first.ipynb", parameters="SEED = 0\nRATE = 0.5\nNAME = 'a'\nLIMIT = None\nPATH = str(1)")
    assert check_parameters({"SEED": 3, "RATE": 1, "NAME": 8, "LIMIT": 5, "PATH": None}, [nbs / "00_first.ipynb"]) \
        == {"SEED": 3, "RATE": 1.0, "NAME": "8", "LIMIT": 5, "PATH": None}


def test_the_cli_exits_2_on_a_typo(capsys):
    assert main(["--profile", "tiny", "--notebooks", "00", "-p", "SEEED", "7"]) == 2
    assert "did you mean 'SEED'" in capsys.readouterr().err
