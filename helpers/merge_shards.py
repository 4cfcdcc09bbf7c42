"""Notebook 03's merge, one safetensors shard at a time: the merge that fits a free Colab T4 runtime.

PEFT's `merge_and_unload()` needs the whole full-precision model in memory: 16 GB for LLaMA-3-8B in bf16, more
than a T4 (15 GiB) or a free Colab's RAM (12.7 GB). The arithmetic itself is local to each weight, so it streams:
for every adapted weight, W' = W + (lora_alpha / r) · B @ A, computed in fp32 and stored in the merge dtype,
shard by shard; the trained `score` head from the adapter goes into a small shard of its own. Peak RAM is about
the largest base shard plus one fp32 weight matrix, and nothing touches the GPU.

    merge_adapter_by_shard(base, adapter_dir, out_dir, dtype, pad_token_id)   # the merged reward model
    ensure_merged_model(run_dir, profile)   # notebooks 04/05: rebuild it on a fresh runtime's local disk
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .env import KitError, large_files_dir, require_safetensors
from .merge import HEAD_SHARD, INDEX, MANIFEST, write_consumer_keys, write_reward_head_manifest

PREFIX = "base_model.model."  # how PEFT names the wrapped model's weights in adapter_model.safetensors


def _adapter_parts(adapter_dir) -> tuple[float, dict, dict]:
    """(scale, {base weight name: (A, B)}, {head weight name: tensor}) of a saved LoRA adapter."""
    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    unsupported = [k for k in ("use_dora", "use_rslora", "rank_pattern", "alpha_pattern") if config.get(k)]
    if unsupported or config.get("peft_type") != "LORA":
        what = ", ".join(unsupported) or f"peft_type {config.get('peft_type')}"
        raise KitError(f"{adapter_dir}: the shard-by-shard merge handles plain LoRA only, not {what}. Merge "
                       "with PeftModel.from_pretrained(...).merge_and_unload() on a machine with enough memory.")
    lora, head = {}, {}
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as f:
        for key in f.keys():
            name = key.removeprefix(PREFIX)
            for part in ("A", "B"):
                if f".lora_{part}.weight" in name:
                    lora.setdefault(name.replace(f".lora_{part}.weight", ".weight"), {})[part] = f.get_tensor(key)
            if name.startswith("score."):
                head[name] = f.get_tensor(key)
    return config["lora_alpha"] / config["r"], lora, head


def _base_shards(base_path, token: str | None = None) -> list[str]:
    """Local paths of the base checkpoint's safetensors files (a folder, or the hub cache)."""
    from transformers.utils import cached_file

    index = cached_file(base_path, INDEX, token=token, _raise_exceptions_for_missing_entries=False)
    names = sorted(set(json.loads(Path(index).read_text())["weight_map"].values())) if index else ["model.safetensors"]
    return [cached_file(base_path, name, token=token) for name in names]


def _check_fits(base_path, adapter_dir, shards: list[str], lora: dict, head: dict, hidden: int) -> None:
    """Refuse, before writing anything, an adapter whose weights or head do not fit this base."""
    shapes = {}
    for shard in shards:
        with safe_open(shard, "pt") as f:
            shapes.update({key: list(f.get_slice(key).get_shape()) for key in f.keys()})
    base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    fix = f"Fix: merge it into the base it was trained on (adapter_config.json's base_model_name_or_path: {base!r})."
    absent = sorted(set(lora) - set(shapes))
    if absent:
        raise KitError(f"The adapter {adapter_dir} adapts weights the base {base_path} does not have: "
                       f"{absent[:3]}. {fix}")
    wrong = [f"{k} is {shapes[k]} in the base, the adapter's update is {[ab['B'].shape[0], ab['A'].shape[1]]}"
             for k, ab in sorted(lora.items()) if shapes[k] != [ab["B"].shape[0], ab["A"].shape[1]]]
    if wrong:
        raise KitError(f"The adapter {adapter_dir} does not fit the base {base_path}: {'; '.join(wrong[:2])}"
                       f"{f' (and {len(wrong) - 2} more)' if len(wrong) > 2 else ''}. {fix}")
    for key, weight in head.items():
        if key == "score.weight" and list(weight.shape) != [1, hidden]:
            raise KitError(f"score.weight is {list(weight.shape)} in the adapter {adapter_dir}, but a reward head on "
                           f"the base {base_path} (hidden_size {hidden}) is [1, {hidden}]: one reward per sequence "
                           f"from the last hidden state. {fix}")


def _sequence_classifier_config(base_path, dtype, pad_token_id: int, extra: dict | None, token: str | None):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_path, token=token)
    arch = (config.architectures or ["LlamaForCausalLM"])[0]
    config.architectures = [arch.replace("ForCausalLM", "ForSequenceClassification")]
    config.num_labels, config.pad_token_id, config.dtype = 1, pad_token_id, dtype
    config.update(extra or {})
    return config


def merge_adapter_by_shard(base_path, adapter_dir, out_dir, dtype: torch.dtype, pad_token_id: int,
                           token: str | None = None, extra_config: dict | None = None, seed: int = 0) -> Path:
    """Merge a LoRA reward adapter into its base, one shard at a time, as an `AutoModelForSequenceClassification`.

    Same result as `PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()` + `save_pretrained` (the tests
    compare them), without ever holding the whole model. The base's `lm_head` is left out: a reward model has the
    `score` head instead. An adapter without a head (LoRA trained without `task_type="SEQ_CLS"`) gets what PEFT's
    merge would save in its place: a randomly initialised head (notebook 03's pitfall).

    Args:
        base_path: the base model (hub id or folder), as in notebook 02.
        dtype: the merge dtype (fp32 on CPU, the training dtype on a GPU).
        extra_config: keys to add to config.json (OpenRLHF's `value_head_prefix`, `mean`, `std`).

    Returns:
        `out_dir`, holding config.json, the shards and their index.
    """
    require_safetensors(adapter_dir, "adapter")
    require_safetensors(base_path, "base model")
    scale, lora, head = _adapter_parts(adapter_dir)
    config = _sequence_classifier_config(base_path, dtype, pad_token_id, extra_config, token)
    if not head:  # what transformers' init gives a new Linear head: normal(0, initializer_range)
        generator = torch.Generator().manual_seed(seed)
        head = {"score.weight": torch.randn(1, config.hidden_size, generator=generator) * config.initializer_range}
    out_dir, shards, weight_map = Path(out_dir), _base_shards(base_path, token), {}
    _check_fits(base_path, adapter_dir, shards, lora, head, config.hidden_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, shard in enumerate(tqdm(shards, desc="merging shards")):
        name, tensors = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors", {}
        with safe_open(shard, "pt") as f:
            for key in f.keys():
                if key == "lm_head.weight":
                    continue
                weight = f.get_tensor(key)
                if key in lora:
                    weight = weight.float() + scale * (lora[key]["B"].float() @ lora[key]["A"].float())
                tensors[key] = weight.to(dtype) if weight.is_floating_point() else weight
        save_file(tensors, str(out_dir / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        del tensors
    save_file({k: v.to(dtype).contiguous() for k, v in head.items()}, str(out_dir / HEAD_SHARD),
              metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(head, HEAD_SHARD))
    total = sum((out_dir / f).stat().st_size for f in set(weight_map.values()))
    (out_dir / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    config.save_pretrained(out_dir)
    return out_dir


def merged_model_dir(run_dir) -> Path:
    """Where notebook 03 saves the merged reward model: RUN_DIR/rm_merged, or local disk when RUN_DIR is on Drive."""
    return large_files_dir(run_dir) / "rm_merged"


def ensure_merged_model(run_dir, profile, token: str | None = None) -> Path:
    """The merged reward model of notebook 03, rebuilt from the adapter on Drive when this runtime lacks it.

    In Colab every notebook is a fresh runtime: the 15 GB merged model that notebook 03 wrote to local disk is
    gone, and Drive is too small to keep it. What 03 kept on Drive (the adapter, the tokenizer and, in its
    metrics, the merge dtype and the reward normalisation) is enough to rebuild it, shard by shard.
    """
    from transformers import AutoTokenizer

    from .data import require_inputs

    run_dir, out = Path(run_dir), merged_model_dir(run_dir)
    if (out / MANIFEST).exists():
        return out
    adapter_dir = run_dir / "rm_adapter"
    recipe_path, = require_inputs([run_dir / "metrics" / "03_merge_value_head.json"], notebook="03_merge_value_head")
    recipe = json.loads(recipe_path.read_text())
    print(f"{out} is not on this runtime's disk: rebuilding it from {adapter_dir} (what notebook 03 merged)")
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    norm = recipe["normalization"]
    merge_adapter_by_shard(profile.model_path("rm_base", run_dir), adapter_dir, out,
                           getattr(torch, recipe["merge_dtype"]), tokenizer.pad_token_id, token,
                           extra_config={"value_head_prefix": "score", **norm})
    tokenizer.save_pretrained(out)
    write_consumer_keys(out)
    write_reward_head_manifest(out, tokenizer, base_model=profile.rm_base, adapter_dir=adapter_dir, normalization=norm,
                               run_dir=run_dir)
    return out
