"""Reward Lab helpers: the plumbing behind the course notebooks, one module per stage.

The calls that *are* the lesson (BitsAndBytesConfig, LoraConfig, RewardConfig, RewardTrainer,
merge_and_unload, KTOConfig, KTOTrainer) stay in the notebooks; this package holds the rest.
"""

from .env import (
    KIT_ROOT,
    DtypeChoice,
    KitError,
    check_hardware,
    check_model_access,
    default_run_dir,
    get_hf_token,
    hardware_report,
    in_colab,
    pick_dtype,
    set_seed,
    setup,
    versions,
)
from .profiles import PROFILES, Profile, download_models, get_profile
from .runs import collect_metrics, prepare_run_dir, run_course, save_metrics
from .tiny import LLAMA3_CHAT_TEMPLATE, LLAMA3_PAD_TOKEN, build_tiny_models, state_checksum

__all__ = [
    "KIT_ROOT", "DtypeChoice", "KitError", "check_hardware", "check_model_access", "default_run_dir",
    "get_hf_token", "hardware_report", "in_colab", "pick_dtype", "set_seed", "setup", "versions",
    "PROFILES", "Profile", "download_models", "get_profile",
    "collect_metrics", "prepare_run_dir", "run_course", "save_metrics",
    "LLAMA3_CHAT_TEMPLATE", "LLAMA3_PAD_TOKEN", "build_tiny_models", "state_checksum",
]
