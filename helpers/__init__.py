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
    expect_error,
    get_hf_token,
    hardware_report,
    in_colab,
    mount_drive,
    pick_dtype,
    set_seed,
    setup,
    versions,
)
from .audit import audit_lengths, audit_unpaired, suggest_max_length, token_lengths
from .data import DataError, load_preferences, load_unpaired, require_inputs, split_dataset, write_jsonl
from .kto import batches_with_both_labels, kto_class_weights, mix_unpaired, unpair_preferences
from .merge import RewardModelError, export_llamafactory, fit_normalization, load_as_trained, merge_dtype
from .profiles import PROFILES, Profile, download_models, get_profile
from .runs import collect_metrics, prepare_run_dir, run_course, save_metrics
from .score import RewardScorer, pairwise_accuracy, score_pairs
from .tiny import LLAMA3_CHAT_TEMPLATE, LLAMA3_PAD_TOKEN, build_tiny_models, state_checksum
from .verify import verify_reward_model

__all__ = [
    "KIT_ROOT", "DtypeChoice", "KitError", "check_hardware", "check_model_access", "default_run_dir", "expect_error",
    "get_hf_token", "hardware_report", "in_colab", "mount_drive", "pick_dtype", "set_seed", "setup", "versions",
    "audit_lengths", "audit_unpaired", "suggest_max_length", "token_lengths",
    "DataError", "load_preferences", "load_unpaired", "require_inputs", "split_dataset", "write_jsonl",
    "batches_with_both_labels", "kto_class_weights", "mix_unpaired", "unpair_preferences",
    "RewardModelError", "export_llamafactory", "fit_normalization", "load_as_trained", "merge_dtype",
    "PROFILES", "Profile", "download_models", "get_profile", "RewardScorer", "pairwise_accuracy", "score_pairs",
    "verify_reward_model",
    "collect_metrics", "prepare_run_dir", "run_course", "save_metrics",
    "LLAMA3_CHAT_TEMPLATE", "LLAMA3_PAD_TOKEN", "build_tiny_models", "state_checksum",
]
