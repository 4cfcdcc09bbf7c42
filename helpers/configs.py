"""Hand the course's recipe to TRL's own command line, for machines bigger than a notebook.

`export_trl_configs` writes YAML files that `trl reward --config ...` and `trl kto --config ...` accept as
they are: the same model, data, LoRA, quantisation and training values as notebooks 02 and 05. TRL
launches through accelerate, so the same file runs on one GPU, several GPUs, DeepSpeed or FSDP by adding
`--accelerate_config multi_gpu|zero2|zero3|fsdp2` (configs shipped inside TRL) and `--num_processes N`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from .tiny import LLAMA3_CHAT_TEMPLATE, LLAMA3_PAD_TOKEN

# What each accelerate choice needs; the README's multi-GPU section repeats this table.
ACCELERATE_CHOICES = {
    "multi_gpu": "plain DDP, one full model copy per GPU; works with 8-bit/4-bit bases (device_map per process)",
    "zero2": "DeepSpeed ZeRO-2 (pip install deepspeed): shards optimizer state and gradients; not with 8-bit",
    "zero3": "DeepSpeed ZeRO-3: also shards the weights; full-precision base only, for models beyond one GPU",
    "fsdp2": "PyTorch FSDP2: shards weights like ZeRO-3 without DeepSpeed; full-precision base only",
}


def _data_folder(run_dir: Path, name: str, files: dict[str, str]) -> str:
    """A folder holding only train.jsonl / test.jsonl, so `load_dataset(folder)` finds exactly two splits."""
    folder = run_dir / "configs" / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, source in files.items():
        shutil.copyfile(run_dir / "data" / source, folder / f"{split}.jsonl")
    return str(folder)


def _common(profile, seed: int, cpu: bool) -> dict:
    lora = {"use_peft": True, "lora_r": profile.lora_r, "lora_alpha": profile.lora_alpha,
            "lora_dropout": profile.lora_dropout, "lora_target_modules": list(profile.lora_target_modules)}
    quant = {"load_in_8bit": profile.quantization == "8bit", "load_in_4bit": profile.quantization == "4bit"}
    if profile.quantization == "4bit":
        quant.update(bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True)
    train = {"seed": seed, "bf16": True, "use_cpu": cpu, "gradient_checkpointing": profile.gradient_checkpointing,
             "logging_steps": profile.logging_steps, "report_to": "none", "save_strategy": "no"}
    return {**lora, **quant, **train}


def reward_config(profile, run_dir: str | Path, seed: int = 42, cpu: bool = True) -> dict:
    """`trl reward` settings equal to notebook 02's (model, data, LoRA with SEQ_CLS, quantisation, training)."""
    run_dir = Path(run_dir)
    template = run_dir / "configs" / "llama3_chat_template.jinja"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text(LLAMA3_CHAT_TEMPLATE, encoding="utf-8")
    return {
        "model_name_or_path": profile.model_path("rm_base", run_dir),
        "dataset_name": _data_folder(run_dir, "reward_data", {"train": "train.jsonl", "test": "test.jsonl"}),
        "dataset_train_split": "train", "dataset_test_split": "test",
        **_common(profile, seed, cpu), "lora_task_type": "SEQ_CLS",  # trains and saves the `score` head
        "output_dir": str(run_dir / "rm_adapter_cli"), "learning_rate": profile.learning_rate,
        "num_train_epochs": profile.num_train_epochs,
        "per_device_train_batch_size": profile.per_device_train_batch_size,
        "gradient_accumulation_steps": profile.gradient_accumulation_steps,
        "per_device_eval_batch_size": profile.eval_batch_size, "max_length": profile.max_length,
        "eval_strategy": "epoch", "pad_token": LLAMA3_PAD_TOKEN, "chat_template_path": str(template),
    }


def kto_config(profile, run_dir: str | Path, seed: int = 42, cpu: bool = True, weights=(1.0, 1.0)) -> dict:
    """`trl kto` settings equal to notebook 05's (policy, unpaired data, LoRA, beta, class weights)."""
    run_dir = Path(run_dir)
    return {
        "model_name_or_path": profile.model_path("policy_base", run_dir),
        "dataset_name": _data_folder(run_dir, "kto_data", {"train": "unpaired_train.jsonl",
                                                            "test": "unpaired_test.jsonl"}),
        "dataset_train_split": "train", "dataset_test_split": "test",
        **_common(profile, seed, cpu), "lora_task_type": "CAUSAL_LM",
        "output_dir": str(run_dir / "kto_adapter_cli"), "learning_rate": profile.kto_learning_rate,
        "num_train_epochs": profile.kto_epochs, "per_device_train_batch_size": profile.kto_batch_size,
        "max_length": profile.max_length, "beta": profile.kto_beta,
        "desirable_weight": float(weights[0]), "undesirable_weight": float(weights[1]), "eval_strategy": "no",
    }


def export_trl_configs(profile, run_dir: str | Path, seed: int = 42, cpu: bool = True,
                       kto_weights=(1.0, 1.0)) -> dict[str, Path]:
    """Write RUN_DIR/configs/reward.yaml and kto.yaml (plus their data folders); return their paths.

    Run them with `trl reward --config RUN_DIR/configs/reward.yaml` (and `trl kto ...`); on several GPUs add
    `--accelerate_config multi_gpu --num_processes N` (see ACCELERATE_CHOICES for zero2/zero3/fsdp2).
    """
    run_dir = Path(run_dir)
    paths = {}
    for name, settings in (("reward", reward_config(profile, run_dir, seed, cpu)),
                           ("kto", kto_config(profile, run_dir, seed, cpu, kto_weights))):
        paths[name] = run_dir / "configs" / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return paths
