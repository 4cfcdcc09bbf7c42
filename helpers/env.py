"""Runtime plumbing: Colab detection, set-up, dtype policy, seeding, hardware checks, HF access.

Every notebook's first code cell calls `setup()`; the hardware and access checks are what
notebook 00 runs at the start of a workshop.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parent.parent
DRIVE_ROOT = Path("/content/drive/MyDrive")
COLAB_RUNTIME_HINT = "Runtime -> Change runtime type -> T4 GPU (or better), then Runtime -> Run all"
REPORTED_PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "accelerate")


class KitError(RuntimeError):
    """An error whose message is the whole story: notebooks show it without a deep traceback."""

    def _render_traceback_(self):  # IPython calls this instead of printing the stack
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


@contextlib.contextmanager
def expect_error(*types: type[BaseException]):
    """Run a block that is *meant* to fail, and show the error as the learner would see it.

    Error demonstrations use this instead of letting the cell raise: papermill treats any error output as
    a failed run, and nbval's raises-marker passes even when nothing raises. Here the message is printed
    (nbval checks it with `# NBVAL_CHECK_OUTPUT`), and a block that does NOT fail raises AssertionError.
    """
    types = types or (Exception,)
    try:
        yield
    except types as err:
        print(f"{type(err).__name__}: {err}")
    else:
        raise AssertionError(f"expected {' or '.join(t.__name__ for t in types)}, but the code ran without error")


@contextlib.contextmanager
def quiet_transformers():
    """No progress bars or load-report log while loading: for loads whose report the kit checks itself."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def in_colab() -> bool:
    """True when running inside a Google Colab runtime."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def quiet_warnings() -> None:
    """Silence the known-harmless warnings that would bury a learner's output.

    bitsandbytes logs, on every 8-bit matmul, that fp32/bf16 inputs are cast to fp16 (expected: that is
    how LLM.int8() computes).
    """
    import logging

    logging.getLogger("bitsandbytes.autograd._functions").addFilter(
        lambda record: not str(record.msg).startswith("MatMul8bitLt"))
    warnings.filterwarnings("ignore", message="MatMul8bitLt")
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def versions() -> dict[str, str]:
    """Versions of the packages the course depends on ("missing" when absent).

    A package already imported reports the version running in this process; the others report what is
    installed, read from the package metadata without importing them (importing all of them takes seconds).
    """
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in REPORTED_PACKAGES:
        try:
            found[name] = sys.modules[name].__version__ if name in sys.modules else version(name)
        except (PackageNotFoundError, AttributeError):
            found[name] = "missing"
    return found


def _pinned_requirements() -> list[str]:
    lines = (KIT_ROOT / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#") and not ln.startswith("torch")]


def setup(install: bool | None = None) -> dict[str, str]:
    """Prepare the runtime for a notebook and print the versions in use.

    In Colab it installs the kit's pinned requirements (never torch: Colab's own build matches its
    CUDA). Elsewhere it installs nothing: `make setup` already did. If a package had already been
    imported at another version, it says that the runtime must be restarted.

    Args:
        install: force (True) or skip (False) the pip install; default: only in Colab.

    Returns:
        The versions dict, as printed.
    """
    quiet_warnings()
    install = in_colab() if install is None else install
    if install:
        before = {m: sys.modules[m].__version__ for m in REPORTED_PACKAGES if m in sys.modules}
        cmd = [sys.executable, "-m", "pip", "install", "-q", *_pinned_requirements()]
        subprocess.run(cmd, check=True)
        stale = [m for m in before if m != "torch"]
        if stale:
            print(f"Installed pinned versions, but {', '.join(stale)} were already imported at other versions: "
                  "Runtime -> Restart session, then run this notebook again from the top.")
    found = versions()
    print("  ".join(f"{k} {v}" for k, v in found.items()))
    return found


def mount_drive() -> bool:
    """In Colab, mount Google Drive so RUN_DIR (and checkpoints) survive a disconnect; elsewhere do nothing.

    Call it before the parameters cell: `default_run_dir()` then points into Drive. Returns True if mounted.
    """
    if not in_colab():
        return False
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(str(DRIVE_ROOT.parent))
    return True


def default_run_dir() -> str:
    """RUN_DIR default: $REWARD_LAB_RUN_DIR, else Google Drive when mounted, else `runs/default`."""
    if os.environ.get("REWARD_LAB_RUN_DIR"):
        return os.environ["REWARD_LAB_RUN_DIR"]
    if in_colab() and DRIVE_ROOT.is_dir():
        return str(DRIVE_ROOT / "reward-lab" / "runs" / "default")
    return str(KIT_ROOT / "runs" / "default")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a rerun gives the same numbers."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclass(frozen=True)
class DtypeChoice:
    """The floating-point policy for this hardware: what to load in and which Trainer flag to set."""

    dtype: object  # a torch.dtype
    bf16: bool
    fp16: bool
    reason: str

    @property
    def name(self) -> str:
        return str(self.dtype).replace("torch.", "")


def pick_dtype(device: str | None = None, compute_capability: tuple[int, int] | None = None) -> DtypeChoice:
    """Choose the training dtype from the hardware, as PITFALLS.md explains.

    CUDA with compute capability >= 8.0 (A100, L4, H100) -> bf16. 7.x (T4, V100) -> fp16: their bf16
    is emulated, even though `torch.cuda.is_bf16_supported()` may say True. CPU -> bf16 autocast,
    because TRL casts a quantized model's trainable parameters to bf16 and fp32 matmuls against them
    fail ("expected m1 and m2 to have the same dtype").

    Args:
        device: "cuda" or "cpu"; default: cuda when available.
        compute_capability: override for tests, e.g. (7, 5) for a T4.
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return DtypeChoice(torch.bfloat16, True, False,
                           "CPU: bf16 autocast (TRL casts quantized-model adapters to bf16)")
    major, minor = compute_capability or torch.cuda.get_device_capability()
    if major >= 8:
        return DtypeChoice(torch.bfloat16, True, False, f"GPU compute capability {major}.{minor} >= 8.0: native bf16")
    return DtypeChoice(torch.float16, False, True,
                       f"GPU compute capability {major}.{minor} < 8.0: fp16 (bf16 is emulated)")


def hardware_report() -> dict:
    """What this runtime has: device, GPU name and memory in GiB, CPU count."""
    import torch

    report = {"device": "cpu", "gpu_name": None, "gpu_memory_gib": 0.0, "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        report.update(device="cuda", gpu_name=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                      compute_capability=f"{props.major}.{props.minor}")
    return report


def check_hardware(profile, report: dict | None = None) -> dict:
    """Stop with a clear fix when this runtime cannot run `profile`.

    Raises:
        KitError: the profile needs a GPU (or more GPU memory) than this runtime has; the message gives
            the Colab click path and the one-line switch to the offline `tiny` profile.
    """
    report = report or hardware_report()
    need = profile.min_gpu_memory_gib
    if need and report["gpu_memory_gib"] < need:
        have = f"a {report['gpu_name']} with {report['gpu_memory_gib']} GiB" if report["gpu_name"] else "no GPU"
        raise KitError(
            f"Profile '{profile.name}' needs a CUDA GPU with at least {need} GiB; this runtime has {have}.\n"
            f"  In Colab: {COLAB_RUNTIME_HINT}.\n"
            f"  Without a GPU: set PROFILE = \"tiny\" in the parameters cell (offline, CPU, minutes)."
        )
    return report


def get_hf_token() -> str | None:
    """The Hugging Face token from $HF_TOKEN or the Colab secret `HF_TOKEN`; never asks, never prints."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token or not in_colab():
        return token
    try:
        from google.colab import userdata  # type: ignore[import-not-found]

        return userdata.get("HF_TOKEN")
    except Exception:  # noqa: BLE001 - secret missing or notebook access not granted
        return None


def check_model_access(model_id: str, token: str | None = None) -> str:
    """Check that `model_id` can be read with the token; returns "ok" or raises a KitError with the fix.

    Gated models (LLaMA 3) need an accepted licence on the model page and a token with read access.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    licence = f"https://huggingface.co/{model_id}"
    try:
        HfApi().model_info(model_id, token=token or get_hf_token())
    except GatedRepoError as err:
        raise KitError(f"'{model_id}' is gated: accept its licence at {licence}, then add a read token as the "
                       "Colab secret HF_TOKEN (key icon in the left bar) or the env var HF_TOKEN.") from err
    except RepositoryNotFoundError as err:
        raise KitError(f"'{model_id}' was not found or your token cannot see it ({licence}).") from err
    except Exception as err:  # noqa: BLE001 - offline/DNS/HTTP errors come from several libraries
        raise KitError(f"Cannot reach the Hugging Face Hub to check '{model_id}' ({type(err).__name__}). "
                       "Offline? Use PROFILE = \"tiny\".") from err
    return "ok"
