"""Reward Lab helpers: the plumbing behind the course notebooks, one module per stage.

The calls that *are* the lesson (BitsAndBytesConfig, LoraConfig, RewardConfig, RewardTrainer,
merge_and_unload, KTOConfig, KTOTrainer) stay in the notebooks; this package holds the rest.
"""

from __future__ import annotations

import importlib

# name -> submodule. Loaded on first use (PEP 562), so `from helpers import setup` in a notebook's first cell
# imports no ML library: in Colab, setup() must install the pinned versions *before* transformers, trl, peft or
# datasets are imported, or the runtime would keep the preinstalled ones until a restart.
_EXPORTS = {
    "env": ("KIT_ROOT", "DtypeChoice", "KitError", "check_hardware", "check_model_access", "default_run_dir",
            "dtype_policy", "expect_error", "get_hf_token", "hardware_report", "in_colab", "kit_subprocess_env",
            "large_files_dir", "mount_drive", "pick_dtype", "set_seed",
            "setup", "versions"),
    "audit": ("audit_lengths", "audit_unpaired", "suggest_max_length", "token_lengths"),
    "data": ("DataError", "load_preferences", "load_unpaired", "require_inputs", "split_dataset", "write_jsonl"),
    "kto": ("batches_with_both_labels", "kto_class_weights", "mix_unpaired", "unpair_preferences"),
    "merge": ("RewardModelError", "export_llamafactory", "fit_normalization", "load_as_trained", "merge_dtype"),
    "merge_shards": ("ensure_merged_model", "merge_adapter_by_shard", "merged_model_dir"),
    "profiles": ("PROFILES", "Profile", "check_profile_access", "download_models", "get_profile"),
    "resources": ("HARDWARE", "checkpoint_steps", "estimate_resources", "fits", "t4_step_seconds"),
    "runs": ("collect_metrics", "prepare_run_dir", "run_course", "save_metrics"),
    "score": ("RewardScorer", "pairwise_accuracy", "score_pairs"),
    "tiny": ("LLAMA3_CHAT_TEMPLATE", "LLAMA3_PAD_TOKEN", "build_tiny_models", "state_checksum"),
    "train": ("check_trainable_fp32", "keep_trainable_fp32", "latest_checkpoint", "prepare_reward_tokenizer",
              "whole_run_loss"),
    "verify": ("verify_reward_model",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'helpers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # next time without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
