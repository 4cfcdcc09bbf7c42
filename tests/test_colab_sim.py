"""The course in a simulated Colab (tests/colab_sim.py): what the plain papermill run cannot see.

The first tests check the simulation itself, in seconds, without a notebook: the blocker hides the installed kit,
`git clone` fails, the `google.colab` stand-in mounts "Drive" and has no secrets, `google.protobuf` still imports,
and a kernel's IPython imports `google.colab` at start. The `notebooks`-marked tests run the whole course once in
the simulation: one runtime per notebook, only Drive persisting, parameters at their defaults except PROFILE.
"""

import json
import subprocess
import sys

import pytest
from colab_sim import REPO, format_colab_summary, notebook_error, prepare_runtime

notebooks = pytest.mark.notebooks  # the course itself runs once, in conftest.py's `colab_course`


@pytest.fixture
def colab_env(tmp_path):
    """The kernel environment of a fresh simulated runtime, with its content and Drive folders."""
    content, drive = tmp_path / "content", tmp_path / "drive"
    return prepare_runtime(content, drive, tmp_path / "runtime"), content, drive


def run_in(env, code, cwd, *args):
    """A plain Python process (no kernel) of the simulated runtime."""
    return subprocess.run([sys.executable, *args, "-c", code] if code else [sys.executable, *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_installed_kit_is_hidden_outside_the_kernel(colab_env):
    env, content, _ = colab_env
    cli = run_in(env, None, content, "-m", "helpers.score_cli", "--help")
    assert cli.returncode != 0 and "Colab simulation: the kit is not installed" in cli.stderr, cli.stderr
    # the notebook kernel's way: the clone first on sys.path (here the repo stands for the clone)
    clone = run_in(env, f"import sys; sys.path.insert(0, {str(REPO)!r}); import helpers; print(helpers.__file__)",
                   content)
    assert clone.returncode == 0 and clone.stdout.strip() == str(REPO / "helpers" / "__init__.py"), clone.stderr


def test_drive_mount_links_my_drive_to_the_persistent_folder(colab_env):
    env, content, drive = colab_env
    code = ("import os; from google.colab import drive\n"
            "mp = os.path.join(os.environ['REWARD_LAB_CONTENT'], 'drive')\n"
            "drive.mount(mp); drive.mount(mp)\nprint(os.path.realpath(os.path.join(mp, 'MyDrive')))")
    done = run_in(env, code, content)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"Mounted at {content / 'drive'}" and lines[1].startswith("Drive already mounted")
    assert lines[-1] == str(drive.resolve())


def test_drive_mount_refuses_a_mount_point_outside_the_simulated_content(colab_env, tmp_path):
    env, content, _ = colab_env
    done = run_in(env, f"from google.colab import drive; drive.mount({str(tmp_path / 'elsewhere')!r})", content)
    assert done.returncode != 0 and "outside the simulated /content" in done.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_userdata_has_no_secret_unless_given(colab_env):
    env, content, _ = colab_env
    code = "from google.colab import userdata; print(userdata.get('HF_TOKEN'))"
    missing = run_in(env, code, content)
    assert missing.returncode != 0 and "SecretNotFoundError: Secret HF_TOKEN does not exist." in missing.stderr
    given = run_in({**env, "REWARD_LAB_SIM_SECRET_HF_TOKEN": "hf_sim"}, code, content)
    assert given.stdout.strip() == "hf_sim", given.stderr


def test_stub_leaves_google_protobuf_importable(colab_env):
    env, content, _ = colab_env
    done = run_in(env, "import google.colab, google.protobuf; from tensorboard.compat.proto import event_pb2", content)
    assert done.returncode == 0, done.stderr


def test_git_clone_fails_at_once_and_creates_nothing(colab_env):
    env, content, _ = colab_env
    url = "https://github.com/reward-lab/reward-lab"
    done = subprocess.run(["git", "clone", "-q", url, str(content / "a" / "kit")], cwd=content, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 and "no network" in done.stderr and not (content / "a").exists()
    assert subprocess.run(["git", "--version"], env=env, capture_output=True, text=True).returncode == 0


def test_kernel_startup_imports_google_colab(colab_env):
    env, content, _ = colab_env
    code = "import sys; print('google.colab' in sys.modules, 'google' in dir())"
    done = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "-c", code], cwd=content, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "True False", done.stdout + done.stderr


def test_notebook_error_names_the_cell(tmp_path):
    def cell(source, outputs=(), status="completed"):
        return {"cell_type": "code", "source": source, "outputs": list(outputs),
                "metadata": {"papermill": {"status": status}}}

    failed = tmp_path / "failed.ipynb"
    failed.write_text(json.dumps({"cells": [cell("x = 1"), cell("import os, sys\nfrom helpers import setup", [
        {"output_type": "stream", "name": "stdout", "text": ["fatal: no network\n"]},
        {"output_type": "error", "ename": "ModuleNotFoundError", "evalue": "No module named 'helpers'"}])]}))
    assert notebook_error(failed, tmp_path / "log") == ("ModuleNotFoundError: No module named 'helpers' "
                                                        "(cell 'import os, sys'; printed: 'fatal: no network')")
    stopped = tmp_path / "stopped.ipynb"
    stopped.write_text(json.dumps({"cells": [cell("x = 1"), cell("trainer.train()", status="running")]}))
    assert notebook_error(stopped, tmp_path / "log") == "stopped while running cell 'trainer.train()'"
    (tmp_path / "log").write_text("papermill: kernel died\n")
    assert notebook_error(tmp_path / "missing.ipynb", tmp_path / "log") == "papermill: kernel died"


@notebooks
def test_run_dir_never_falls_back_outside_drive(colab_course):
    assert colab_course["repo_runs_changed"] == [], f"written into {REPO / 'runs' / 'default'}"
    written = {n["notebook"]: n["kit_writes"] for n in colab_course["notebooks"] if n["kit_writes"]}
    assert written == {}, f"written into the clone on the wiped local disk: {written}"


@notebooks
def test_drive_usage_is_small_on_tiny(colab_course):
    drive_mib = colab_course["drive_bytes"] / 2**20
    print(f"Drive usage after the tiny course: {drive_mib:.1f} MiB")
    assert 0 < drive_mib < 200, format_colab_summary(colab_course)
