"""Hand the course's recipe to TRL's own command line, for machines bigger than a notebook.

`export_trl_configs` writes YAML files with the same model, data, LoRA, quantisation and training values as
notebooks 02 and 05: the dtype from the same policy (`helpers.env.dtype_policy`), reentrant gradient checkpointing
as they use it. Paths in them are relative to the run folder, so a copied folder names none of this machine's.

Run them from the run folder with `python -m helpers.trl_launch reward --config configs/reward.yaml` (and `kto`):
TRL's own script and parser, plus what TRL's CLI cannot do, keeping the trainable weights in fp32
(`helpers.trl_launch`). `trl reward --config ...` accepts the same files but trains the adapters stored in bf16.
Both launch through accelerate, so the same file runs on one GPU, several GPUs, DeepSpeed or FSDP by adding
`--accelerate_config multi_gpu|zero2|zero3|fsdp2` (configs shipped inside TRL) and `--num_processes N`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from .chat import LLAMA3_CHAT_TEMPLATE, LLAMA3_PAD_TOKEN
from .env import dtype_policy, run_relative

# What each accelerate choice needs; the README's multi-GPU section repeats this table.
ACCELERATE_CHOICES = {
    "multi_gpu": "plain DDP, one full model copy per GPU; works with 8-bit/4-bit bases (device_map per process)",
    "zero2": "DeepSpeed ZeRO-2 (pip install deepspeed): shards optimizer state and gradients; not with 8-bit",
    "zero3": "DeepSpeed ZeRO-3: also shards the weights; full-precision base only, for models beyond one GPU",
    "fsdp2": "PyTorch FSDP2: shards weights like ZeRO-3 without DeepSpeed; full-precision base only",
}

_HEADER = """\
# Notebook {notebook}'s settings for TRL's {command} script (written by helpers.configs.export_trl_configs).
# Paths are relative to the run folder. Run from there:
#   python -m helpers.trl_launch {command} --config configs/{command}.yaml
# (add --accelerate_config multi_gpu --num_processes N for several GPUs). The launcher keeps LoRA{head} in fp32
# as the notebook does; `trl {command} --config configs/{command}.yaml` reads this file too, but TRL then
# stores them in bf16 (a quantized base), where small updates round away and a T4's fp16 GradScaler fails.
# bf16 / fp16 / dtype: the dtype policy {policy!r} where this was written ({reason}). On a T4 (V100):
# bf16: false, fp16: true, dtype: float16; on an A100, L4 or H100: bf16: true, fp16: false, dtype: bfloat16.
"""


def _data_folder(run_dir: Path, name: str, files: dict[str, str]) -> str:
    """A folder holding only train.jsonl / test.jsonl, so `load_dataset(folder)` finds exactly two splits."""
    folder = run_dir / "configs" / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, source in files.items():
        shutil.copyfile(run_dir / "data" / source, folder / f"{split}.jsonl")
    return run_relative(folder, run_dir)


def _common(profile, seed: int, cpu: bool, dtype) -> dict:
    lora = {"use_peft": True, "lora_r": profile.lora_r, "lora_alpha": profile.lora_alpha,
            "lora_dropout": profile.lora_dropout, "lora_target_modules": list(profile.lora_target_modules)}
    quant = {"load_in_8bit": profile.quantization == "8bit", "load_in_4bit": profile.quantization == "4bit"}
    if profile.quantization == "4bit":
        quant.update(bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True)
    train = {"seed": seed, "dtype": str(dtype.dtype).removeprefix("torch."), "bf16": dtype.bf16, "fp16": dtype.fp16,
             "use_cpu": cpu, "gradient_checkpointing": profile.gradient_checkpointing}
    if profile.gradient_checkpointing:  # transformers 5.23's default (use_reentrant=False) took 31.2 GiB, not 12.8
        train["gradient_checkpointing_kwargs"] = {"use_reentrant": True}
    train.update(logging_steps=profile.logging_steps, report_to="none", save_strategy="no")
    return {**lora, **quant, **train}


def _reward_chat_settings(base_path: str) -> tuple[str, str]:
    """The chat template and pad token notebook 02 trains with: `prepare_reward_tokenizer` on the base's tokenizer
    where it is a local folder (it keeps an instruct model's own, such as SmolLM2's), else LLaMA 3's."""
    if Path(base_path).is_dir():
        from transformers import AutoTokenizer

        from .chat import prepare_reward_tokenizer

        tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(base_path))
        return tokenizer.chat_template, tokenizer.pad_token
    return LLAMA3_CHAT_TEMPLATE, LLAMA3_PAD_TOKEN


def reward_config(profile, run_dir: str | Path, seed: int = 42, cpu: bool | None = None, dtype: str = "auto") -> dict:
    """`trl reward` settings equal to notebook 02's (model, data, LoRA with SEQ_CLS, quantisation, training)."""
    run_dir = Path(run_dir)
    chat_template, pad_token = _reward_chat_settings(profile.model_path("rm_base", run_dir))
    template = run_dir / "configs" / "reward_chat_template.jinja"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text(chat_template, encoding="utf-8")
    return {
        "model_name_or_path": run_relative(profile.model_path("rm_base", run_dir), run_dir),
        "dataset_name": _data_folder(run_dir, "reward_data", {"train": "train.jsonl", "test": "test.jsonl"}),
        "dataset_train_split": "train", "dataset_test_split": "test",
        **_common(profile, seed, _cpu(cpu), dtype_policy(dtype)),
        "lora_task_type": "SEQ_CLS",  # trains and saves the `score` head
        "output_dir": "rm_adapter_cli", "learning_rate": profile.learning_rate,
        "num_train_epochs": profile.num_train_epochs,
        "per_device_train_batch_size": profile.per_device_train_batch_size,
        "gradient_accumulation_steps": profile.gradient_accumulation_steps,
        "per_device_eval_batch_size": profile.eval_batch_size, "max_length": profile.max_length,
        "eval_strategy": "epoch", "pad_token": pad_token, "chat_template_path": run_relative(template, run_dir),
    }


def kto_config(profile, run_dir: str | Path, seed: int = 42, cpu: bool | None = None, weights=(1.0, 1.0),
               dtype: str = "auto") -> dict:
    """`trl kto` settings equal to notebook 05's (policy, unpaired data, LoRA, beta, class weights)."""
    run_dir = Path(run_dir)
    return {
        "model_name_or_path": run_relative(profile.model_path("policy_base", run_dir), run_dir),
        "dataset_name": _data_folder(run_dir, "kto_data", {"train": "unpaired_train.jsonl",
                                                            "test": "unpaired_test.jsonl"}),
        "dataset_train_split": "train", "dataset_test_split": "test",
        **_common(profile, seed, _cpu(cpu), dtype_policy(dtype)), "lora_task_type": "CAUSAL_LM",
        "output_dir": "kto_adapter_cli", "learning_rate": profile.kto_learning_rate,
        "num_train_epochs": profile.kto_epochs, "per_device_train_batch_size": profile.kto_batch_size,
        "gradient_accumulation_steps": profile.gradient_accumulation_steps, "max_length": profile.max_length,
        "beta": profile.kto_beta,
        "desirable_weight": float(weights[0]), "undesirable_weight": float(weights[1]), "eval_strategy": "no",
    }


def _cpu(cpu: bool | None) -> bool:
    """`use_cpu` as the notebooks set it: True when this machine has no GPU, unless given."""
    if cpu is not None:
        return cpu
    import torch

    return not torch.cuda.is_available()


def export_trl_configs(profile, run_dir: str | Path, seed: int = 42, cpu: bool | None = None,
                       kto_weights=(1.0, 1.0), dtype: str = "auto") -> dict[str, Path]:
    """Write RUN_DIR/configs/reward.yaml and kto.yaml (plus their data folders); return their paths.

    Run them from RUN_DIR with `python -m helpers.trl_launch reward --config configs/reward.yaml` (and `kto`); on
    several GPUs add `--accelerate_config multi_gpu --num_processes N` (see ACCELERATE_CHOICES for zero2/zero3/fsdp2).

    Args:
        cpu: `use_cpu`; None: True when this machine has no GPU, as in the notebooks.
        dtype: the notebooks' DTYPE ("auto": from this machine's hardware, "fp16" for a T4, "bf16").
    """
    run_dir, choice = Path(run_dir), dtype_policy(dtype)
    paths = {}
    for name, notebook, settings in (
            ("reward", "02", reward_config(profile, run_dir, seed, cpu, dtype)),
            ("kto", "05", kto_config(profile, run_dir, seed, cpu, kto_weights, dtype))):
        header = _HEADER.format(notebook=notebook, command=name, head=" and the score head" if name == "reward" else "",
                                policy=dtype, reason=choice.reason)
        paths[name] = run_dir / "configs" / f"{name}.yaml"
        paths[name].write_text(header + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True),
                               encoding="utf-8")
    return paths
