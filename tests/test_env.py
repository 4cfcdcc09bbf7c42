import os

import pytest
import torch

from helpers import env
from helpers.env import KitError, check_hardware, check_model_access, default_run_dir, pick_dtype
from helpers.profiles import get_profile

CPU = {"device": "cpu", "gpu_name": None, "gpu_memory_gib": 0.0, "cpu_count": 2}
T4 = {"device": "cuda", "gpu_name": "Tesla T4", "gpu_memory_gib": 14.7, "cpu_count": 2}


@pytest.mark.parametrize(
    ("capability", "dtype", "bf16", "fp16"),
    [((8, 0), torch.bfloat16, True, False), ((9, 0), torch.bfloat16, True, False),
     ((7, 5), torch.float16, False, True), ((7, 0), torch.float16, False, True)],
)
def test_pick_dtype_follows_compute_capability(capability, dtype, bf16, fp16):
    choice = pick_dtype("cuda", compute_capability=capability)
    assert (choice.dtype, choice.bf16, choice.fp16) == (dtype, bf16, fp16)
    assert f"{capability[0]}.{capability[1]}" in choice.reason


def test_pick_dtype_cpu_is_bf16_autocast_where_the_cpu_has_bf16(monkeypatch):
    monkeypatch.setenv("REWARD_LAB_CPU_BF16", "1")
    choice = pick_dtype("cpu")
    assert choice.dtype == torch.bfloat16 and choice.bf16 and not choice.fp16
    assert choice.name == "bfloat16"


def test_gpu_profile_on_cpu_stops_with_click_path_and_tiny_switch():
    with pytest.raises(KitError) as err:
        check_hardware(get_profile("llama3-8b"), CPU)
    message = str(err.value)
    assert "needs a CUDA GPU" in message and "no GPU" in message
    assert "Runtime -> Change runtime type -> T4 GPU" in message
    assert 'PROFILE = "tiny"' in message


def test_gpu_profile_fits_a_t4_and_tiny_fits_a_cpu():
    assert check_hardware(get_profile("llama3-8b"), T4) is T4
    assert check_hardware(get_profile("tiny"), CPU) is CPU


def test_kit_error_renders_without_a_stack_in_ipython():
    assert KitError("do this").\
        _render_traceback_() == ["\x1b[31mKitError\x1b[0m: do this"]


def test_default_run_dir_reads_env(monkeypatch, tmp_path):
    monkeypatch.setenv("REWARD_LAB_RUN_DIR", str(tmp_path))
    assert default_run_dir() == str(tmp_path)
    monkeypatch.delenv("REWARD_LAB_RUN_DIR")
    assert default_run_dir().endswith("runs/default")


def test_token_comes_from_env_and_is_never_printed(monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    assert env.get_hf_token() == "hf_secret_value_123"
    env.setup(install=False)
    assert "hf_secret_value_123" not in capsys.readouterr().out


def test_setup_outside_colab_installs_nothing_and_prints_versions(monkeypatch, capsys):
    monkeypatch.setattr(env.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run outside Colab"))
    found = env.setup()
    assert found["torch"].startswith("2.") and found["trl"] != "missing"
    assert "transformers" in capsys.readouterr().out


def test_first_cell_imports_no_ml_library_before_setup_installs():
    """In Colab, setup() installs the pinned versions; anything imported before it would stay at Colab's version."""
    import subprocess
    import sys

    probe = ("import sys\nfrom helpers import setup, default_run_dir\nsetup(install=False)\n"
             "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'bitsandbytes', "
             "'accelerate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "[]", out
    assert "trl 1.16.0" in out  # versions come from the installed metadata, without importing


def test_setup_in_colab_installs_pinned_requirements_but_never_torch(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(env, "in_colab", lambda: True)
    monkeypatch.setattr(env.subprocess, "run", lambda cmd, check: calls.append(cmd))
    import transformers  # noqa: F401 - imported before setup(), as if a cell had run out of order

    env.setup(drive=False)
    packages = calls[0][calls[0].index("-q") + 1:]
    assert "trl==1.16.0" in packages and not any(p.startswith("torch") for p in packages)
    # Colab's kernel runs on its own jupyter packages: the test and papermill tools must never be installed there
    dev = ("papermill", "nbval", "nbformat", "ipykernel", "pytest")
    assert not [p for p in packages if p.split("==")[0] in dev], packages
    assert "Restart session" in capsys.readouterr().out


def test_model_access_offline_says_use_tiny(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", offline)
    with pytest.raises(KitError, match=r"Cannot reach the Hugging Face Hub.*PROFILE = \"tiny\""):
        check_model_access("meta-llama/Meta-Llama-3-8B", token="x")


def test_mount_drive_does_nothing_outside_colab():
    assert env.mount_drive() is False


def test_run_dir_in_colab_is_on_drive_and_big_files_stay_local(monkeypatch, tmp_path):
    content = tmp_path / "content"
    monkeypatch.setenv("REWARD_LAB_CONTENT", str(content))
    monkeypatch.delenv("REWARD_LAB_RUN_DIR", raising=False)
    monkeypatch.setattr(env, "in_colab", lambda: True)
    # Drive not mounted: the run folder is on the runtime's disk (and mount_drive said what that costs)
    assert default_run_dir() == str(content / "reward-lab-runs" / "default")  # beside the clone, not inside it
    assert env.large_files_dir(default_run_dir()) == (content / "reward-lab-runs" / "default").resolve()
    drive = tmp_path / "real_drive"
    drive.mkdir()
    (content / "drive").mkdir(parents=True)
    (content / "drive" / "MyDrive").symlink_to(drive)  # what drive.mount leaves behind
    run_dir = default_run_dir()
    assert run_dir == str(content / "drive" / "MyDrive" / "reward-lab" / "runs" / "default")
    assert env.large_files_dir(run_dir) == content / "reward-lab-local" / "default"


def test_mount_drive_failure_is_explained_not_raised(monkeypatch, tmp_path, capsys):
    import sys
    import types

    monkeypatch.setenv("REWARD_LAB_CONTENT", str(tmp_path))
    monkeypatch.setattr(env, "in_colab", lambda: True)
    declined = types.SimpleNamespace(mount=lambda *a, **k: (_ for _ in ()).throw(ValueError("mount failed")))
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(drive=declined))
    assert env.mount_drive() is False
    assert "will not find these files" in capsys.readouterr().out


def test_subprocess_env_makes_a_cloned_kit_importable(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    paths = env.kit_subprocess_env()["PYTHONPATH"].split(os.pathsep)
    assert paths == [str(env.KIT_ROOT), "/elsewhere"]


def test_dtype_policy_can_force_the_t4_policy():
    assert env.dtype_policy("fp16").fp16 and not env.dtype_policy("fp16").bf16
    assert env.dtype_policy("auto") == pick_dtype()
    with pytest.raises(ValueError, match="DTYPE='fp32' is not one of"):
        env.dtype_policy("fp32")


def test_quiet_warnings_drops_known_noise_and_nothing_else(caplog):
    """bitsandbytes' missing optional 4-bit CPU kernel and tqdm's "IProgress not found": noise in every notebook."""
    import logging
    import warnings

    env.quiet_warnings()
    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        bnb.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "no kernels")
        bnb.warning("something else from bitsandbytes")
    assert [r.getMessage() for r in caplog.records] == ["something else from bitsandbytes"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        env.quiet_warnings()
        warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", UserWarning, stacklevel=1)
        warnings.warn("a real problem", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a real problem"]


def test_the_whole_course_takes_fp32_on_a_cpu_whose_bf16_is_emulated(monkeypatch):
    """AVX2-only CPUs emulate bf16, far slower than fp32: every notebook's "auto" is fp32 there, a forced bf16 stays."""
    import torch

    from helpers import env

    monkeypatch.delenv("REWARD_LAB_CPU_BF16", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    for choice in (env.dtype_policy("auto"), env.pick_dtype()):
        assert choice.dtype == torch.float32 and not choice.bf16 and not choice.fp16 and "AVX2" in choice.reason
    assert env.dtype_policy("bf16").bf16  # a forced choice is kept
    monkeypatch.setenv("REWARD_LAB_CPU_BF16", "1")  # the override the suite uses to run either path anywhere
    assert env.dtype_policy("auto").bf16
    monkeypatch.delenv("REWARD_LAB_CPU_BF16")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert env.dtype_policy("auto").bf16
    monkeypatch.setenv("REWARD_LAB_CPU_BF16", "0")
    assert not env.dtype_policy("auto").bf16
