"""What notebook 03 should not repeat: the as-trained reload, the exports and the verifier.

The lesson calls (full-precision `from_pretrained`, `PeftModel.from_pretrained`, `merge_and_unload`) stay in the
notebook; the merge that fits a T4 runtime, shard by shard, is `helpers.merge_shards`. The layout (in RUN_DIR, or on
Colab's local disk when RUN_DIR is on Drive: `helpers.merge_shards.merged_model_dir`):

    RUN_DIR/rm_merged/                  AutoModelForSequenceClassification; its config.json also holds
                                        OpenRLHF's `value_head_prefix` and the reward `mean` / `std`
    RUN_DIR/rm_merged/reward_head.json  head, pad, pooling, chat-template hash, normalization, provenance
    RUN_DIR/rm_merged/llamafactory/     the decoder as a causal LM + value_head.safetensors (v_head.summary.*)

Both folders carry the keys transformers 4.x reads beside transformers 5's own (`write_consumer_keys`); which
consumer reads which folder, and what each must be told, is in the manifest's `exports`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .env import KitError, pick_dtype, quiet_transformers, require_safetensors, run_relative
from .score import pad_batch, spearman

MANIFEST = "reward_head.json"
VALUE_HEAD_FILE = "value_head.safetensors"
HEAD_SHARD = "model-score.safetensors"  # the head alone, so exports can link the decoder shards as they are
INDEX = "model.safetensors.index.json"
POOLING = "hidden state of the last non-pad token (rightmost id != pad_token_id; right padding)"
# "a|b": either will do (save_pretrained shards a big model behind an index file).
MODEL_FILES = ("config.json", "model.safetensors|model.safetensors.index.json", "tokenizer_config.json",
               "tokenizer.json")
REQUIRED_FILES = (*MODEL_FILES, MANIFEST, "llamafactory/config.json", f"llamafactory/{VALUE_HEAD_FILE}")
# Allowed max |score difference| between two copies of one reward model (merged vs base + adapter, an export vs
# the merged model), relative to the rewards' scale: max |reward| of the reference, at least 1. fp32 differs
# by summation order only (measured: 2e-6 to 7e-6 on the tiny course's rewards); a 16-bit merge rounds every
# weight once more: bf16 keeps 8 significant bits (eps 7.8e-3), fp16 11 (eps 9.8e-4), and the error of many
# rounded layers adds up to a few eps.
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def allowed_diff(reference, dtype: torch.dtype) -> float:
    """The largest score difference accepted between copies of a model merged in `dtype` (see TOLERANCE)."""
    scale = max(1.0, float(np.abs(np.concatenate([np.ravel(v) for v in (
        reference.values() if isinstance(reference, dict) else [reference])])).max()))
    return TOLERANCE[dtype] * scale


class RewardModelError(KitError):
    """A saved reward model that would score wrongly elsewhere; the message lists each problem and its fix."""


def merge_dtype(device: str | None = None) -> torch.dtype:
    """The full-precision dtype to merge in: fp32 on CPU, the GPU's 16-bit training dtype on CUDA.

    Never the 8-bit weights: merging into int8 rounds `W + BA` back to int8, losing part of the small
    LoRA update, and leaves a bitsandbytes checkpoint other tools cannot use as a plain model.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.float32 if device == "cpu" else pick_dtype(device).dtype


def load_as_trained(base_path, adapter_dir, quantization: str | None, dtype: torch.dtype, pad_token_id: int,
                    device_map=None, token: str | None = None):
    """Rebuild the reward model exactly as notebook 02 trained and scored it: quantized base + adapter.

    The training steps in order: the same `BitsAndBytesConfig`, `prepare_model_for_kbit_training` (norms
    and embeddings in fp32), the adapter, its trainable weights in fp32 as notebook 02 kept them
    (`keep_trainable_fp32`), and the forward pass under the trainer's autocast. Scores equal the trainer's bit
    for bit at the same batch size (tests/test_merge.py checks it).

    Args:
        quantization: "8bit", "4bit" or None, as notebook 02's metrics record it.
        dtype: the dtype notebook 02 loaded the base in (its metrics' "dtype").

    Returns:
        The `PeftModel`, in eval mode.
    """
    from peft import PeftModel, prepare_model_for_kbit_training
    from transformers import AutoModelForSequenceClassification

    config = quantization_config(quantization, dtype)
    require_safetensors(base_path, "base model")
    require_safetensors(adapter_dir, "adapter")
    with quiet_transformers():  # the base's report (no score head, an unused lm_head): the adapter brings the head
        model = AutoModelForSequenceClassification.from_pretrained(
            base_path, num_labels=1, quantization_config=config, dtype=dtype,
            device_map=device_map, token=token, use_safetensors=True)
    model.config.pad_token_id = pad_token_id
    if quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    if quantization:
        adapter_weights_fp32(model)
    return with_training_autocast(model, dtype).eval()


def quantization_config(quantization: str | None, dtype: torch.dtype):
    """The `BitsAndBytesConfig` notebook 02 trained with, from the name its metrics record ("8bit", "4bit", None)."""
    from transformers import BitsAndBytesConfig

    configs = {"8bit": BitsAndBytesConfig(load_in_8bit=True), None: None,
               "4bit": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)}
    if quantization not in configs:
        raise ValueError(f"quantization={quantization!r} is not '8bit', '4bit' or None; pass the value "
                         "notebook 02 wrote to RUN_DIR/metrics/02_train_reward_model.json.")
    return configs[quantization]


def adapter_weights_fp32(model) -> None:
    """LoRA and head weights back in fp32, as notebook 02 trained them (PEFT loads them in the base's dtype)."""
    for name, param in model.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            param.data = param.data.float()


def with_training_autocast(model, dtype: torch.dtype):
    """Run `model.forward` under the autocast the trainer used, as accelerate wraps a trained model's forward.

    accelerate's `prepare_model` replaces `model.forward` with an autocast version under mixed precision
    (accelerate/accelerator.py, `model.forward = convert_outputs_to_fp32(autocast_context(...))`), so the
    trainer's own scores are computed in bf16 (CPU, Ampere) or fp16 (a T4; accelerate has no fp16 autocast on CPU).
    """
    device = next(model.parameters()).device
    if dtype == torch.float32 or (dtype == torch.float16 and device.type == "cpu"):
        return model
    forward = model.forward

    def autocast_forward(*args, **kwargs):
        with torch.autocast(device_type=device.type, dtype=dtype):
            return forward(*args, **kwargs)

    model.forward = autocast_forward
    return model


def _is_head_key(key: str) -> bool:
    return ".score." in f".{key}"


def adapter_head(adapter_dir) -> torch.Tensor | None:
    """The `score` head saved in an adapter (`task_type="SEQ_CLS"` puts it there), or None if it has none."""
    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.exists():
        raise KitError(f"No adapter_model.safetensors in {adapter_dir}: run notebooks/"
                       "02_train_reward_model.ipynb first, or pass the folder trainer.save_model wrote.")
    with safe_open(str(path), "pt") as f:
        keys = [k for k in f.keys() if _is_head_key(k) and k.endswith("weight")]
        return f.get_tensor(keys[0]) if keys else None


def strip_reward_head(adapter_dir, out_dir) -> Path:
    """Copy an adapter without its `score` head: what LoRA without `task_type="SEQ_CLS"` saves."""
    src, out_dir = Path(adapter_dir), Path(out_dir)
    shutil.copytree(src, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
    with safe_open(str(src / "adapter_model.safetensors"), "pt") as f:
        kept = {k: f.get_tensor(k) for k in f.keys() if not _is_head_key(k)}
    save_file(kept, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "adapter_config.json").read_text())
    config.update(task_type=None, modules_to_save=None)
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out_dir


def compare_scores(reference: dict, other: dict) -> dict[str, float]:
    """How far two models' `score_pairs` results on the same pairs are apart.

    Returns:
        max_abs_diff over every answer; agreement, the share of pairs where both models prefer the same
        side; spearman, the rank correlation over every answer.
    """
    a = np.concatenate([reference["chosen"], reference["rejected"]])
    b = np.concatenate([other["chosen"], other["rejected"]])
    if a.shape != b.shape:
        raise ValueError(f"Cannot compare {a.size} scores with {b.size}: score the same pairs with both "
                         "models.")
    same = (reference["chosen"] > reference["rejected"]) == (other["chosen"] > other["rejected"])
    return {"max_abs_diff": float(np.abs(a - b).max()), "agreement": float(same.mean()),
            "spearman": spearman(a, b)}


def fit_normalization(scores: dict) -> dict[str, float]:
    """Reward `mean` and `std` over every held-out answer, so that (r - mean) / std is about N(0, 1)."""
    rewards = np.concatenate([scores["chosen"], scores["rejected"]]).astype(float)
    if rewards.size < 2 or rewards.std() == 0:
        raise ValueError(f"Cannot fit a normalisation on {rewards.size} reward(s) with std "
                         f"{rewards.std():.3g}: score the held-out split with the merged model first.")
    return {"mean": float(rewards.mean()), "std": float(rewards.std())}


def _base_tensor(base_path, name: str, token: str | None = None) -> torch.Tensor:
    """One tensor of the base checkpoint (local folder or hub cache), read from its safetensors shard."""
    from transformers.utils import cached_file

    index = cached_file(base_path, "model.safetensors.index.json", token=token,
                        _raise_exceptions_for_missing_entries=False)
    filename = json.loads(Path(index).read_text())["weight_map"][name] if index else "model.safetensors"
    with safe_open(cached_file(base_path, filename, token=token), "pt") as f:
        return f.get_tensor(name)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows it (no second copy of a 5 GB shard), else a copy."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


_PPO_YAML = """\
# LLaMA-Factory PPO with this reward model. Had LLaMA-Factory trained the RM, its own export would keep
# the value head only with `stage: rm` (llamafactory-cli export ... finetuning_type: lora, stage: rm).
# reward_model is relative to the folder holding rm_merged/ (the run folder): run llamafactory-cli from
# there, or write the folder's absolute path.
stage: ppo
do_train: true
model_name_or_path: YOUR_POLICY_MODEL
finetuning_type: lora
{template_lines}reward_model: {path}
reward_model_type: full
"""
# LLaMA-Factory's chat templates for the reward models this kit trains (src/llamafactory/data/template.py,
# `register_template`): name -> (a string only that chat template contains, the default system message LLaMA-Factory's
# copy writes when a conversation has none). Its `smollm2` ends the message with a full stop; SmolLM2's own does not.
LLAMAFACTORY_TEMPLATES = {
    "llama3": ("<|start_header_id|>", ""),
    "smollm2": ("You are a helpful AI assistant named SmolLM",
                "You are a helpful AI assistant named SmolLM, trained by Hugging Face."),
}
_LLAMAFACTORY_NOTES = {
    "llama3": "its llama3 template does not strip message text: strip responses before scoring, or a trailing space "
              "or newline adds a token the RM never saw",
    "smollm2": "its smollm2 template writes SmolLM2's default system message with a full stop, SmolLM2's own template "
               "without one: set LLaMA-Factory's default_system to the model's own (default_system here; "
               "llamafactory_ppo.yaml sets it), or give every conversation a system message",
}


def default_system_message(tokenizer) -> str:
    """The system message the chat template writes into a conversation that has none ("" when it writes none)."""
    mark, user = "SYSTEM-MESSAGE-MARK", [{"role": "user", "content": "USER-MESSAGE-MARK"}]
    try:
        head, tail = tokenizer.apply_chat_template([{"role": "system", "content": mark}, *user],
                                                   tokenize=False).split(mark)
    except ValueError:  # a template without system messages
        return ""
    plain = tokenizer.apply_chat_template(user, tokenize=False)
    if plain.startswith(head) and plain.endswith(tail) and len(plain) > len(head) + len(tail):
        return plain[len(head):len(plain) - len(tail)]
    return ""


def llamafactory_template(tokenizer, template: str | None = None) -> dict:
    """LLaMA-Factory's settings for this tokenizer's chat template: what `llamafactory_ppo.yaml` and the manifest say.

    Args:
        template: a LLaMA-Factory template name to use; None: recognise it (`LLAMAFACTORY_TEMPLATES`).

    Returns:
        `template`: the name, None when no known template matches; `default_system`: the model's own default system
        message where LLaMA-Factory's template would write another (LLaMA-Factory's `default_system` setting), else
        None; `note`: what to get right.
    """
    chat_template = tokenizer.chat_template or ""
    if template is None:
        template = next((name for name, (marker, _) in LLAMAFACTORY_TEMPLATES.items() if marker in chat_template), None)
    own = default_system_message(tokenizer)
    theirs = LLAMAFACTORY_TEMPLATES[template][1] if template in LLAMAFACTORY_TEMPLATES else ""
    note = _LLAMAFACTORY_NOTES.get(template, "no LLaMA-Factory template known for this chat template: name the one "
                                             "that renders it token for token (src/llamafactory/data/template.py)")
    return {"template": template, "default_system": own if own != theirs else None, "note": note}


def _llamafactory_template_lines(settings: dict) -> str:
    name = settings["template"]
    lines = (f"template: {name}\n" if name else
             "# no LLaMA-Factory template is known for this chat template: name the one that renders it token for\n"
             "# token (src/llamafactory/data/template.py)\ntemplate: YOUR_TEMPLATE\n")
    if settings["default_system"] is not None:
        theirs = f"LLaMA-Factory's {name} template writes another" if name else "LLaMA-Factory's may write another"
        lines += (f"# the default system message the reward model was trained with ({theirs})\n"
                  f"default_system: {json.dumps(settings['default_system'], ensure_ascii=False)}\n")
    return lines


def write_consumer_keys(folder) -> dict:
    """Make a saved folder read the same in transformers 4.x, 5.x and vLLM; return the keys written.

    transformers 5 keeps RoPE in `rope_parameters` only: 4.x reads `rope_theta` (and `rope_scaling`) and, finding
    none, silently uses theta = 10000 instead of the model's own (500000 for LLaMA 3, 100000 for SmolLM2). 5 names
    the tokenizer class `TokenizersBackend`, a class 4.x lacks; `PreTrainedTokenizerFast` loads the same
    tokenizer.json in both. 4.x reads the dtype from
    `torch_dtype`. vLLM's classify pooler applies a sigmoid to a one-label model unless `problem_type` is
    "regression", so without it a vLLM user gets sigma(reward), not the reward.
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    rope = dict(config.get("rope_parameters") or {})
    written = {"problem_type": "regression", "torch_dtype": config.get("dtype", "float32")}
    if rope:
        written["rope_theta"] = rope.pop("rope_theta", 10000.0)
        written["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    (folder / "config.json").write_text(json.dumps({**config, **written}, indent=2, ensure_ascii=False))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    if tokenizer_config.get("tokenizer_class") == "TokenizersBackend":
        tokenizer_config["tokenizer_class"] = written["tokenizer_class"] = "PreTrainedTokenizerFast"
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    return written


def export_llamafactory(merged_dir, tokenizer, out_dir, base_path, token: str | None = None,
                        template: str | None = None) -> Path:
    """Write LLaMA-Factory's reward-model layout from the merged folder: causal LM + `value_head.safetensors`.

    LLaMA-Factory's reward model is a causal LM with a value head beside it, `v_head.summary` =
    Linear(hidden, 1) *with* a bias. Our `score` head is Linear(hidden, 1, bias=False), so the bias is
    zero and the rewards are the same. The decoder shards are linked, not copied; the causal LM gets the
    base's (untrained) `lm_head` in a shard of its own where the model has a separate one (not with tied
    embeddings, as SmolLM2's), and its config says `...ForCausalLM`: normal. `llamafactory_ppo.yaml` names the
    LLaMA-Factory template of the tokenizer's chat template (`template`: None recognises it, `llamafactory_template`)
    and sets `default_system` where that template's default system message is not the model's own.
    """

    merged_dir, out_dir = Path(merged_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = json.loads((merged_dir / INDEX).read_text())
    weight_map = {k: v for k, v in index["weight_map"].items() if v != HEAD_SHARD}
    for shard in set(weight_map.values()):
        _link_or_copy(merged_dir / shard, out_dir / shard)
    config = json.loads((merged_dir / "config.json").read_text())
    for key in ("value_head_prefix", "mean", "std"):  # OpenRLHF's keys belong to the main export
        config.pop(key, None)
    config["architectures"] = [config["architectures"][0].replace("ForSequenceClassification", "ForCausalLM")]
    if not config.get("tie_word_embeddings"):
        lm_head = _base_tensor(base_path, "lm_head.weight", token).to(getattr(torch, config["dtype"]))
        save_file({"lm_head.weight": lm_head.contiguous()}, str(out_dir / "lm_head.safetensors"),
                  metadata={"format": "pt"})
        weight_map["lm_head.weight"] = "lm_head.safetensors"
    (out_dir / INDEX).write_text(json.dumps({"metadata": index["metadata"], "weight_map": weight_map}, indent=2))
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(out_dir)
    with safe_open(str(merged_dir / HEAD_SHARD), "pt") as f:
        weight = f.get_tensor("score.weight")
    save_file({"v_head.summary.weight": weight, "v_head.summary.bias": torch.zeros(1, dtype=weight.dtype)},
              str(out_dir / VALUE_HEAD_FILE), metadata={"format": "pt"})
    ppo = _PPO_YAML.format(template_lines=_llamafactory_template_lines(llamafactory_template(tokenizer, template)),
                           path=run_relative(out_dir, merged_dir.parent))
    (out_dir / "llamafactory_ppo.yaml").write_text(ppo)
    write_consumer_keys(out_dir)
    return out_dir


@torch.no_grad()
def llamafactory_scores(export_dir, tokenizer, conversations: list[list[dict]], batch_size: int = 16,
                        **load_kwargs) -> np.ndarray:
    """Rewards read the LLaMA-Factory way: `v_head` on the causal LM's last hidden state, last real token.

    `load_kwargs` go to `from_pretrained` (on a T4: `dtype=torch.float16, device_map="auto"`).
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(export_dir, use_safetensors=True, **load_kwargs).eval()
    with safe_open(str(Path(export_dir) / VALUE_HEAD_FILE), "pt") as f:
        weight, bias = (f.get_tensor(f"v_head.summary.{k}").to(model.device, model.dtype)
                        for k in ("weight", "bias"))
    ids = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=False) for c in conversations]
    rewards = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        input_ids, mask = pad_batch(chunk, tokenizer.pad_token_id)
        out = model(input_ids.to(model.device), attention_mask=mask.to(model.device),
                    output_hidden_states=True, logits_to_keep=1)
        last = out.hidden_states[-1][torch.arange(len(chunk)), mask.sum(-1) - 1]  # right padding
        rewards.append((last @ weight.T + bias).float().squeeze(-1).cpu().numpy())
    return np.concatenate(rewards)


def chat_template_sha256(tokenizer) -> str:
    """Fingerprint of the chat template: rewards only compare under the template the model was trained on."""
    return hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest()


def write_reward_head_manifest(out_dir, tokenizer, base_model: str, adapter_dir, normalization: dict,
                               run_dir=None) -> dict:
    """Write `reward_head.json` beside a saved reward model: what a consumer needs to read a reward correctly.

    `base_model` and `adapter_dir` are recorded relative to `run_dir` (default: `out_dir`'s parent, the run folder
    when rm_merged is in it), so the file names no folder of this machine (`helpers.env.run_relative`).
    """

    out_dir, index = Path(out_dir), Path(out_dir) / INDEX
    run_dir = Path(run_dir) if run_dir is not None else out_dir.parent
    shard = json.loads(index.read_text())["weight_map"]["score.weight"] if index.exists() else "model.safetensors"
    with safe_open(str(out_dir / shard), "pt") as f:
        weight, has_bias = f.get_tensor("score.weight"), "score.bias" in f.keys()
    config = json.loads((out_dir / "config.json").read_text())
    lf_keys = ["v_head.summary.weight", "v_head.summary.bias"]
    lf_template = llamafactory_template(tokenizer)
    manifest = {
        "head": {"key": "score.weight", "shape": list(weight.shape), "bias": has_bias},
        "pad_token_id": config["pad_token_id"], "pad_token": tokenizer.pad_token, "pooling": POOLING,
        "chat_template_sha256": chat_template_sha256(tokenizer), "normalization": normalization,
        "base_model": run_relative(base_model, run_dir), "adapter_source": run_relative(adapter_dir, run_dir),
        "paths": "base_model and adapter_source are relative to the run folder (RUN_DIR); a hub id as given; a "
                 "local folder outside the run folder by its name only",
        "dtype": str(weight.dtype).removeprefix("torch."),
        "exports": {
            "transformers": {"dir": ".", "versions": "4.x and 5.x", "class": "AutoModelForSequenceClassification",
                             "read": "logits[:, 0] (pooling above)"},
            "vllm": {"dir": ".", "runner": "pooling", "call": "LLM.classify or vllm serve --runner pooling",
                     "read": "outputs.probs[0]: the raw reward, as config.json says problem_type regression"},
            "trl": {"dir": ".", "use": "GRPOTrainer / RLOOTrainer reward_funcs=<this folder>"},
            "openrlhf": {"dir": ".", "value_head_prefix": "score", "config_keys": ["value_head_prefix", "mean", "std"],
                         "note": "normalize_reward=True returns wrong rewards on transformers >= 5.15 (mean/std "
                                 "buffers not restored, OpenRLHF PR #1343): load with normalize_reward=False and "
                                 "apply (r - mean) / std from this file"},
            "llamafactory": {"dir": "llamafactory", "value_head": VALUE_HEAD_FILE, "keys": lf_keys,
                             "stage_at_export": "rm", "reward_model_type": "full", **lf_template,
                             "policy": "its PPO scores the policy's own token ids: the policy must share this "
                                       "tokenizer and chat template"}},
    }
    Path(out_dir, MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest
