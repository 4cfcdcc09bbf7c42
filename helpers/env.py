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
# requirements.txt lists the runtime libraries first; below this line come the tools of the test suite and of
# papermill runs (papermill, nbval, ipykernel, pytest), which Colab must not get: its kernel runs on its own.
DEV_MARKER = "# --- development and CI only"
COLAB_RUNTIME_HINT = "Runtime -> Change runtime type -> T4 GPU (or better), then Runtime -> Run all"
REPORTED_PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "accelerate")


class KitError(RuntimeError):
    """An error whose message is the whole story: notebooks show it without a deep traceback."""

    def _render_traceback_(self):  # IPython calls this instead of printing the stack
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


def require_safetensors(folder, what: str = "model") -> None:
    """Refuse a local folder whose weights are only PyTorch pickles (`*.bin`): the kit loads safetensors only.

    transformers gets `use_safetensors=True` everywhere, but PEFT falls back to `adapter_model.bin` by itself
    (peft/utils/save_and_load.py, `load_peft_weights`), and either way a clear message beats a missing-file error.
    A Hub id (not a local folder) is left to `from_pretrained(..., use_safetensors=True)`.

    Raises:
        KitError: names the folder, the pickle files and how to convert them.
    """
    folder = Path(folder)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
    if pickles:
        raise KitError(f"{folder}: the {what} weights are only PyTorch pickle files ({', '.join(pickles[:3])}). "
                       "The kit loads safetensors only: unpickling a file can run code. Fix: where you trust the "
                       "file, load it once and save_pretrained() it again (transformers and PEFT write .safetensors "
                       "by default).")


def probe_writable(folder) -> None:
    """Create, write and remove a file in `folder` to prove it is writable.

    The file gets a fresh random name, created with O_EXCL (`tempfile.mkstemp`): a fixed name could be a symlink
    planted in a shared folder, and writing through it would overwrite the file it points to.

    Raises:
        OSError: the folder cannot be written (the caller names it and says what to do).
    """
    import tempfile

    fd, name = tempfile.mkstemp(dir=folder, prefix=".write_test.")
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(name)


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
    how LLM.int8() computes); on a CPU with AVX512-BF16 it logs at import that an optional 4-bit CPU kernel
    ("gemm_4bit_forward", from the `kernels` package) is missing: the kit never runs 4-bit on a CPU. tqdm warns
    "IProgress not found" where ipywidgets is absent (papermill, plain Jupyter): the bars print as text instead.
    """
    import logging

    logging.getLogger("bitsandbytes.autograd._functions").addFilter(
        lambda record: not str(record.msg).startswith("MatMul8bitLt"))
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
        lambda record: "gemm_4bit_forward" not in str(record.msg))
    warnings.filterwarnings("ignore", message="IProgress not found")
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
    """The runtime libraries of requirements.txt (what a Colab runtime needs), without torch and dev tools."""
    text = (KIT_ROOT / "requirements.txt").read_text().split(DEV_MARKER)[0]
    lines = [ln.strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#") and not ln.startswith("torch")]


def content_root() -> Path:
    """Colab's local disk (`/content`): fast and large, wiped when the runtime ends.

    $REWARD_LAB_CONTENT overrides it; the test suite's Colab simulation points it at a temporary folder.
    """
    return Path(os.environ.get("REWARD_LAB_CONTENT", "/content"))


def drive_root() -> Path:
    """Where Google Drive's `MyDrive` appears once mounted: the only storage that outlives a Colab runtime."""
    return content_root() / "drive" / "MyDrive"


def setup(install: bool | None = None, drive: bool = True) -> dict[str, str]:
    """Prepare the runtime for a notebook and print the versions in use.

    In Colab it installs the kit's pinned runtime libraries (never torch, whose build matches Colab's CUDA,
    and never jupyter/papermill/pytest, which Colab's own kernel runs on) and mounts Google Drive, where
    every notebook of the course finds what the previous ones wrote. Elsewhere it installs nothing:
    `make setup` already did. If a package had already been imported at another version, it says that the
    runtime must be restarted.

    Args:
        install: force (True) or skip (False) the pip install; default: only in Colab.
        drive: mount Google Drive in Colab (default True); False keeps the run on this runtime's disk only.

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
    if in_colab() and drive:
        mount_drive()
    return found


def mount_drive() -> bool:
    """In Colab, mount Google Drive so that RUN_DIR outlives this runtime; elsewhere do nothing.

    Each Colab notebook runs in its own runtime whose disk is wiped, so the course keeps its run folder on
    Drive. If mounting fails (declined, or no Drive), this says plainly what that costs instead of raising.
    Returns True if Drive is mounted.
    """
    if not in_colab():
        return False
    if drive_root().is_dir():
        return True
    try:
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount(str(drive_root().parent))
    except Exception as err:  # noqa: BLE001 - Colab raises several types when the user declines
        print(f"Google Drive is not mounted ({type(err).__name__}: {err}). RUN_DIR falls back to this runtime's "
              f"disk ({content_root() / 'reward-lab-runs'}), which is wiped when the runtime ends: the next "
              "notebook, in its own runtime, will not find these files. Rerun this cell and allow access to keep them.")
        return False
    return drive_root().is_dir()


def default_run_dir() -> str:
    """RUN_DIR default: $REWARD_LAB_RUN_DIR; in Colab, Drive (unmounted: the local disk); else `runs/default`."""
    if os.environ.get("REWARD_LAB_RUN_DIR"):
        return os.environ["REWARD_LAB_RUN_DIR"]
    if in_colab():  # without Drive: beside the clone (/content/reward-lab), not inside it
        if drive_root().is_dir():
            return str(drive_root() / "reward-lab" / "runs" / "default")
        return str(content_root() / "reward-lab-runs" / "default")
    return str(KIT_ROOT / "runs" / "default")


def large_files_dir(run_dir) -> Path:
    """Where a notebook writes big artifacts (merged models, exports): RUN_DIR itself, except on Colab's Drive.

    A free Drive holds 15 GB and a merged 8B reward model alone is 15 GB, so in Colab they go to the local disk
    (`/content/reward-lab-local/<run name>`), and later notebooks rebuild them from the small files on Drive.
    """
    run_dir = Path(run_dir).resolve()
    drive = drive_root().resolve() if drive_root().is_dir() else None
    if in_colab() and drive is not None and run_dir.is_relative_to(drive):
        return content_root() / "reward-lab-local" / run_dir.name
    return run_dir


def run_relative(path, run_dir) -> str:
    """`path` as files in a run folder record it, so a copied or uploaded folder names none of this machine's.

    Inside `run_dir`: relative to it ("rm_adapter", "models/tiny-llama3"). A hub id: as given. A local folder
    outside `run_dir`: its name only (the full path would be this machine's).
    """
    given = Path(path)
    if not given.is_absolute() and not given.exists():  # a hub id such as "meta-llama/Meta-Llama-3-8B"
        return str(path)
    found, run = given.resolve(), Path(run_dir).resolve()
    return found.relative_to(run).as_posix() if found.is_relative_to(run) else found.name


def kit_subprocess_env() -> dict[str, str]:
    """The environment for a `python -m helpers...` subprocess, with this kit importable.

    In Colab the kit is cloned, not installed: only the kernel's `sys.path` has it, and a subprocess starts
    from the environment, not from that list. PYTHONPATH carries it across.
    """
    paths = [str(KIT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


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
    """Choose the training dtype from the hardware (notebook 00, "Hardware and dtype", explains the policy).

    CUDA with compute capability >= 8.0 (A100, L4, H100) -> bf16. 7.x (T4, V100) -> fp16: their bf16
    is emulated, even though `torch.cuda.is_bf16_supported()` may say True. CPU with native bf16 (AVX-512, AMX)
    -> bf16 autocast, the CPU's closest twin of 16-bit GPU compute: accelerate enables fp16 autocast only on GPUs
    (accelerate/accelerator.py, `native_amp`). CPU without it (AVX2 only: most laptops, some CI machines) -> fp32
    for the whole course: torch emulates bf16 there, many times slower (`cpu_bf16_is_fast`). Trainable parameters
    stay fp32 everywhere (`helpers.train.keep_trainable_fp32`).

    Args:
        device: "cuda" or "cpu"; default: cuda when available.
        compute_capability: override for tests, e.g. (7, 5) for a T4.
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        if not cpu_bf16_is_fast():
            return DtypeChoice(torch.float32, False, False, f"CPU without native bf16 "
                               f"({torch.backends.cpu.get_cpu_capability()}): fp32, bf16 would be emulated")
        return DtypeChoice(torch.bfloat16, True, False,
                           "CPU: bf16 autocast (accelerate has no fp16 autocast on CPU)")
    major, minor = compute_capability or torch.cuda.get_device_capability()
    if major >= 8:
        return DtypeChoice(torch.bfloat16, True, False, f"GPU compute capability {major}.{minor} >= 8.0: native bf16")
    return DtypeChoice(torch.float16, False, True,
                       f"GPU compute capability {major}.{minor} < 8.0: fp16 (bf16 is emulated)")


def cpu_bf16_is_fast() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 or AMX); AVX2-only CPUs emulate it, far slower than fp32.

    Measured on a 2-core AVX2 machine (torch 2.13): a 512 x 512 matmul takes 2.5 ms in fp32 and 220 ms in bf16
    (`make test` 30 minutes instead of 10). The environment variable REWARD_LAB_CPU_BF16=0 (or 1) overrides the
    detection: CI and tests use it to run the AVX2 path on any machine.
    """
    import torch

    forced = os.environ.get("REWARD_LAB_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return torch.backends.cpu.get_cpu_capability().startswith(("AVX512", "AMX"))


def dtype_policy(name: str = "auto") -> DtypeChoice:
    """`pick_dtype()` for "auto", or the policy a learner forces: "fp16" (a T4's) or "bf16".

    Forcing "fp16" on a CPU builds the trainer exactly as on a T4 (`fp16=True`, fp16 weights); accelerate
    enables fp16 autocast only on GPUs, so the CPU computes in fp32 but the set-up checks still apply.
    "auto" on a CPU without native bf16 gives fp32 (`pick_dtype`).
    """
    import torch

    choices = {"fp16": DtypeChoice(torch.float16, False, True, "forced: fp16 (a T4's policy)"),
               "bf16": DtypeChoice(torch.bfloat16, True, False, "forced: bf16")}
    if name == "auto":
        return pick_dtype()
    if name not in choices:
        raise ValueError(f"DTYPE={name!r} is not one of 'auto', 'fp16', 'bf16'.")
    return choices[name]


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
