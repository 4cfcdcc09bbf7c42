"""Computed resource model: peak GPU memory, RAM, local disk and Drive of every notebook, on Colab hardware.

Everything here is COMPUTED, not measured: parameters are counted on each model's public config built on the meta
device (nothing is downloaded); the rest follows from the course's decisions, the sources of transformers 5.23,
peft 0.21.2, trl 1.16 and bitsandbytes 0.50.2, and the numbers in `ASSUMED`. Assumptions:
- 8-bit (LLM.int8): 1 byte per decoder Linear weight + one fp32 scale per output row; embeddings, norms and the head
  stay 16-bit (transformers' `get_keys_to_not_convert`). `prepare_model_for_kbit_training` casts them to fp32, so the
  embeddings emit fp32: the residual stream, the int8 layers' outputs (bitsandbytes returns its input's dtype) and the
  MLP intermediates are fp32 under fp16/bf16 autocast; SDPA runs in 16 bit (memory-efficient kernel: no seq²).
- Trainable parameters (LoRA; with SEQ_CLS the score head) in fp32: weight, gradient, two AdamW states.
- Gradient checkpointing keeps each layer's input; the backward recomputes one layer and adds the gradients of two MLP
  intermediates and one de-quantized weight matrix (in the input's dtype).
- Worst case for memory: every sequence at `max_length`. Batches: 02 trains 2 x per_device_train_batch_size sequences
  and evaluates 2 x eval_batch_size; 03 scores eval_batch_size; 04/05 score with `RewardScorer.score_batch`'s default;
  05 trains kto_batch_size rows and computes held-out log-probs with `completion_logps`' default batch.
- KTO (TRL 1.16): KL and reference passes run without grad, and the fused LM head scores 4096 tokens x 32768 vocab
  entries at a time: the step never holds batch x seq x vocab logits. `helpers.kto_train.completion_logps` does: fp32
  logits and their log_softmax.
- RAM: the kernel's baseline + the largest safetensors shard being read (transformers loads shard by shard) + weights
  offloaded to CPU. The merge runs shard by shard on CPU (+ one fp32 weight matrix) and writes 16-bit shards like the
  base's to local disk. device_map="auto": transformers gives weights 90% of the free GPU memory and accelerate keeps
  the largest module's room; where activations then lack room, a `max_memory` is computed (`max_memory_gpu_gib`).
  Notebook 03's fresh-process check is a second Python process with its own CUDA context, scoring one probe at a time.
- Local disk is per runtime (each notebook re-downloads what it loads); Drive is cumulative over the run folder.
- Step time: 2 x decoder-Linear parameters x tokens (+ causal attention) for the forward, the same for the recompute
  and for the backward (input gradients only: the base is frozen), at the `ASSUMED` throughputs; the kit's train
  pairs at `chars_per_token`, each micro-batch padded to its longest sequence.
"""

from __future__ import annotations

import inspect
import json
import math
from functools import cache
from pathlib import Path

GiB, GB = 2**30, 1e9
KIT_PAIRS = Path(__file__).resolve().parent.parent / "data" / "preferences.jsonl"
NUMBERS = ("vram_gib", "ram_gb", "local_disk_gb", "drive_gb")

LLAMA3_8B_CONFIG = {
    "hidden_size": 4096,  # meta-llama/Meta-Llama-3-8B config.json
    "num_hidden_layers": 32,  # config.json
    "intermediate_size": 14336,  # config.json
    "num_attention_heads": 32,  # config.json
    "num_key_value_heads": 8,  # config.json
    "vocab_size": 128256,  # config.json
    "tie_word_embeddings": False,  # config.json
    "rope_theta": 500000.0,  # config.json
    "max_position_embeddings": 8192,  # config.json
}
LLAMA32_3B_INSTRUCT_CONFIG = {
    "hidden_size": 3072,  # meta-llama/Llama-3.2-3B-Instruct config.json
    "num_hidden_layers": 28,  # config.json
    "intermediate_size": 8192,  # config.json
    "num_attention_heads": 24,  # config.json
    "num_key_value_heads": 8,  # config.json
    "vocab_size": 128256,  # config.json
    "tie_word_embeddings": True,  # config.json
}
MODELS = {  # sizes from each repository's file listing: bf16 safetensors in all, largest shard, tokenizer.json
    "meta-llama/Meta-Llama-3-8B": {"config": LLAMA3_8B_CONFIG, "safetensors_gb": 16.06, "largest_shard_gb": 5.0,
                                   "tokenizer_gb": 0.009},  # 4 shards
    "meta-llama/Llama-3.2-3B-Instruct": {"config": LLAMA32_3B_INSTRUCT_CONFIG, "safetensors_gb": 6.43,
                                         "largest_shard_gb": 5.0, "tokenizer_gb": 0.009},  # 2 shards
}
HARDWARE = {  # Colab: usable GPU memory, system RAM, free local disk (wiped with the runtime), a free account's Drive
    "T4": {"vram_gib": 15.0, "ram_gb": 12.7, "local_disk_gb": 78.0, "drive_gb": 15.0, "dtype": "fp16",
           "scores_in_8bit": True},
    "L4": {"vram_gib": 22.5, "ram_gb": 53.0, "local_disk_gb": 200.0, "drive_gb": 15.0, "dtype": "bf16",
           "scores_in_8bit": True},
    "A100_40GB": {"vram_gib": 39.5, "ram_gb": 83.5, "local_disk_gb": 200.0, "drive_gb": 15.0, "dtype": "bf16",
                  "scores_in_8bit": False},  # the course scores in 8 bit below a 40 GB card
}
ASSUMED = {  # name: (value, what it stands for): assumed, not measured
    "cuda_context_gib": (0.4, "CUDA context and cuBLAS workspace, in every GPU phase"),
    "ram_baseline_gb": (2.5, "Python, torch and the CUDA libraries in a Colab kernel"),
    "subprocess_baseline_gb": (1.5, "a second Python process with torch, transformers and CUDA (no Jupyter)"),
    "packages_gb": (0.5, "the kit and its pinned libraries, installed on each runtime's disk"),
    "outputs_gb": (0.002, "metrics, figures and score files one notebook writes to the run folder"),
    "vram_target": (0.9, "share of the GPU a computed max_memory leaves the phase"),
    "t4_fp16_tflops": (20.0, "T4 fp16 tensor cores at realistic utilisation (65 peak)"),
    "int8_slowdown": (2.0, "LLM.int8 forward (quantise, int8 GEMM, outliers, de-quantise) vs fp16"),
    "t4_fp32_tflops": (5.0, "T4 fp32 cores (8.1 peak): the int8 backward on fp32 inputs multiplies in fp32"),
    "chars_per_token": (4, "characters per LLaMA 3 token in the kit's pairs"),
    "template_tokens": (13, "chat-template tokens around a prompt and one answer"),
}


def _a(name: str) -> float:
    return ASSUMED[name][0]


def _model(model_id: str) -> dict:
    if model_id not in MODELS:
        raise ValueError(f"No embedded config for {model_id!r}; known: {sorted(MODELS)}. Add its config.json values "
                         "and file sizes to helpers.resources.MODELS.")
    return MODELS[model_id]


@cache
def count_parameters(model_id: str, head: str = "causal_lm", lora_r: int = 0,
                     lora_targets: tuple[str, ...] = ()) -> dict[str, int]:
    """Count the parameters of `model_id` by kind, on a model built from its embedded config on the meta device.

    Args:
        model_id: a key of `MODELS`.
        head: "causal_lm" (`AutoModelForCausalLM`) or "score" (`AutoModelForSequenceClassification`, one label).
        lora_r, lora_targets: the LoRA rank and target module names whose adapter parameters to count.

    Returns:
        {"total" (tied weights once), "quantized" (the Linear weights bitsandbytes converts), "quantized_rows",
        "other" (embeddings, norms, head), "largest_linear", "layers", "head", "lora"}.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig
    from transformers.quantizers.base import get_keys_to_not_convert

    config = LlamaConfig(**_model(model_id)["config"], num_labels=1)
    auto = AutoModelForSequenceClassification if head == "score" else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    skip = get_keys_to_not_convert(model)  # what transformers' bitsandbytes quantizer leaves in 16 bit
    linears = {n: m for n, m in model.named_modules() if type(m) is torch.nn.Linear and not any(k in n for k in skip)}
    total, quantized = sum(p.numel() for p in model.parameters()), sum(m.weight.numel() for m in linears.values())
    return {"total": total, "quantized": quantized, "other": total - quantized, "layers": config.num_hidden_layers,
            "quantized_rows": sum(m.out_features for m in linears.values()),
            "largest_linear": max(m.weight.numel() for m in linears.values()),
            "head": (model.score if head == "score" else model.get_output_embeddings()).weight.numel(),
            "lora": sum(lora_r * (m.in_features + m.out_features) for n, m in linears.items()
                        if n.rsplit(".", 1)[-1] in lora_targets)}


def _layer_bytes(cfg: dict, act: int, quantized: bool) -> dict[str, int]:
    """Bytes per token of one decoder layer: saved for the backward, and the peak of a forward without grad."""
    h, i, c = cfg["hidden_size"], cfg["intermediate_size"], 2
    # attention: norm output, q_proj's and v_proj's LoRA inputs cast to 16 bit (when act is fp32), SDPA's q and
    # repeated k, v (a padding mask rules out its GQA path), its output, o_proj's input, the residual;
    # MLP: norm output, gate, SiLU(gate), up and their product (down_proj's input)
    saved = h * (3 * act + 5 * c) + (2 * h * c if act != c else 0) + 4 * i * act
    # no grad: SiLU(gate) lives while up_proj runs (int8: int32 accumulator, fp16 de-quantised, cast to `act`)
    mlp = act + 4 + 2 + (act if act != c else 0) if quantized else 3 * c
    return {"saved": saved, "infer": 3 * h * act + i * mlp}


def _weights(p: dict, quantization: str | None, prepared: bool) -> dict[str, float]:
    if not quantization:
        return {"weights_16bit": p["total"] * 2 / GiB}
    per_weight = {"8bit": 1.0, "4bit": 0.5 + 1 / 64 + 4 / (64 * 256)}[quantization]  # NF4 + double-quant absmax
    scales = p["quantized_rows"] * 4 if quantization == "8bit" else 0
    return {f"weights_{quantization}": (p["quantized"] * per_weight + scales) / GiB,
            f"embeddings_norms_head_{'fp32' if prepared else '16bit'}": p["other"] * (4 if prepared else 2) / GiB}


def _train_vram(p: dict, cfg: dict, tokens: int, quantization, checkpointing: bool, trainable: int,
                fused_head: bool = False) -> dict[str, float]:
    h, i, act = cfg["hidden_size"], cfg["intermediate_size"], 4 if quantization else 2
    saved = _layer_bytes(cfg, act, bool(quantization))["saved"]
    backward = tokens * (2 * i + 2 * h) * act + (p["largest_linear"] * act if quantization else 0)
    if fused_head:  # TRL's fused LM head: a 16-bit tile, a 16-bit weight chunk, the fp32 hidden-state gradient
        backward = max(backward, 4096 * 32768 * 2 + 32768 * h * 2 + tokens * h * 4)
    stored = ({"checkpoints": p["layers"] * tokens * h * act, "recomputed_layer": tokens * saved} if checkpointing
              else {"activations_every_layer": p["layers"] * tokens * (saved + h * act)})
    return {"cuda_context": _a("cuda_context_gib"), **_weights(p, quantization, prepared=bool(quantization)),
            "trainable_fp32_with_adamw": trainable * 16 / GiB, **{k: v / GiB for k, v in stored.items()},
            "backward_temporaries": backward / GiB, "final_norm_and_head": tokens * h * (2 * act + 2) / GiB}


def _infer_vram(p: dict, cfg: dict, tokens: int, quantization, prepared: bool) -> dict[str, float]:
    act = 4 if prepared else 2
    return {"cuda_context": _a("cuda_context_gib"), **_weights(p, quantization, prepared),
            "forward_temporaries": tokens * _layer_bytes(cfg, act, bool(quantization))["infer"] / GiB}


def _ram(model_id: str, merge_p: dict | None = None, offloaded_gib: float = 0.0) -> dict[str, float]:
    """Loading (or, given `merge_p`, merging shard by shard) `model_id`: baseline + one shard (+ one fp32 matrix)."""
    return {"python_torch_cuda": _a("ram_baseline_gb"), "largest_shard": _model(model_id)["largest_shard_gb"],
            "fp32_weight_matrix": merge_p["largest_linear"] * 4 / GB if merge_p else 0.0,
            "weights_offloaded_to_cpu": offloaded_gib * GiB / GB}


def _notebook(vram: dict, ram: dict, disk: dict, drive: dict, **extra) -> dict:
    """Each resource's peak over the phases: its value, phase, components, and every phase's total."""
    out = {"peak_phase": {}, "components": {}, "phases": {}}
    for key, phases in zip(NUMBERS, (vram, ram, {"this runtime": disk}, {"run folder": dict(drive)}), strict=True):
        totals = {name: round(sum(parts.values()), 2) for name, parts in phases.items()}
        out[key] = max(totals.values())
        out["peak_phase"][key] = name = max(totals, key=totals.get)
        out["components"][key] = {k: round(v, 3) for k, v in phases[name].items() if v}
        out["phases"][key] = totals
    return {k: out[k] for k in NUMBERS} | {k: out[k] for k in ("peak_phase", "components", "phases")} | extra


def _scoring(pr, hw: dict, s: dict, drive: dict, name: str, vram=None, ram=None, disk=None) -> dict:
    """Rebuild the merged RM on local disk (base + adapter, shard by shard) and load it to score: 04, and 05's end."""
    q = "8bit" if hw["scores_in_8bit"] else None  # whatever the profile trained with
    label = f"scoring, {'8-bit' if q else hw['dtype']}, {s['score_batch']} x {pr.max_length} tokens"
    vram = (vram or {}) | {label: _infer_vram(s["rm"], s["rm_cfg"], s["score_batch"] * pr.max_length, q, False)}
    ram = (ram or {}) | {"shard-by-shard merge on CPU": _ram(pr.rm_base, s["rm"]),
                         "loading the merged RM": _ram(pr.rm_base)}
    drive[f"{name}_outputs"] = _a("outputs_gb")
    disk = s["disk"] | {"hf_cache_rm_base": s["rm_cache"], "merged_rm_16bit": s["merged_gb"]} | (disk or {})
    return _notebook(vram, ram, disk, drive)


def _nb02(pr, hw: dict, s: dict, drive: dict) -> dict:
    p, tokens, evals = s["rm"], 2 * pr.per_device_train_batch_size * pr.max_length, 2 * pr.eval_batch_size
    adapter = (p["lora"] + p["head"]) * 4 / GB
    drive.update({"rm_adapter_fp32": adapter, "rm_tokenizer": s["rm_tokenizer"], "tensorboard_logs": 0.001,
                  "rm_checkpoints_x2 (adapter, AdamW states, tokenizer)": 2 * (3 * adapter + s["rm_tokenizer"]),
                  "02_outputs": _a("outputs_gb")})
    train = _train_vram(p, s["rm_cfg"], tokens, pr.quantization, pr.gradient_checkpointing, p["lora"] + p["head"])
    evaluate = _infer_vram(p, s["rm_cfg"], evals * pr.max_length, pr.quantization, bool(pr.quantization))
    return _notebook({f"training step, {tokens} tokens": train, f"evaluation, {evals} x {pr.max_length} tokens":
                      evaluate}, {"loading the base": _ram(pr.rm_base)},
                     s["disk"] | {"hf_cache_rm_base": s["rm_cache"]}, drive)


def _auto_map(hw: dict, p: dict, weights: float, temporaries: float, contexts: int = 1, fit: bool = False):
    """device_map="auto" for `weights` GiB in 16 bit: VRAM parts, GiB offloaded to CPU, and the computed cap."""
    ctx, layer = contexts * _a("cuda_context_gib"), p["quantized"] / p["layers"] * 2 / GiB
    free = hw["vram_gib"] - ctx  # transformers: 90% of the free memory; accelerate keeps the embedding's room
    default = 0.9 * free - (p["other"] * 2 / GiB if weights > 0.9 * free else 0)
    fitted = math.floor((_a("vram_target") * hw["vram_gib"] - ctx - layer - temporaries) * 2) / 2
    cap = max(0.0, min(default, fitted if fit else default, weights))
    return ({"cuda_context": ctx, "weights_on_gpu": cap, "offloaded_layer_in_transit": layer if weights > cap else 0,
             "forward_temporaries": temporaries}, weights - cap, cap if fit and cap < min(default, weights) else None)


def _nb03(pr, hw: dict, s: dict, drive: dict) -> dict:
    p, cfg, tokens, merged = s["rm"], s["rm_cfg"], pr.eval_batch_size * pr.max_length, s["rm"]["total"] * 2 / GiB
    temporaries = {n: _infer_vram(p, cfg, n, None, False)["forward_temporaries"] for n in (tokens, pr.max_length)}
    verify, offloaded, cap = _auto_map(hw, p, merged, temporaries[tokens], fit=True)
    fresh, fresh_offloaded, _ = _auto_map(hw, p, merged, temporaries[pr.max_length], contexts=2)  # one probe at a time
    vram = {"verification, 16-bit, device_map='auto'": verify, "fresh-process check, device_map='auto'": fresh}
    if pr.quantization:
        vram["as-trained reference, 8-bit + adapter"] = _infer_vram(p, cfg, tokens, pr.quantization, prepared=True)
    drive["03_outputs"] = _a("outputs_gb")
    disk = s["disk"] | {"hf_cache_rm_base": s["rm_cache"], "merged_rm_16bit": s["merged_gb"],
                        "llamafactory_lm_head_shard": s["lm_head_gb"], "headless_copy (deleted after)": s["merged_gb"]}
    ram = {"shard-by-shard merge on CPU": _ram(pr.rm_base, p), "verification load": _ram(pr.rm_base, None, offloaded),
           "fresh-process check": _ram(pr.rm_base, None, fresh_offloaded)
           | {"second_python_process": _a("subprocess_baseline_gb")}}
    default = sum(_auto_map(hw, p, merged, temporaries[tokens])[0].values())
    return _notebook(vram, ram, disk, drive, max_memory_gpu_gib=cap, transformers_default_vram_gib=round(default, 2))


def _nb05(pr, hw: dict, s: dict, drive: dict) -> dict:
    p, cfg, tokens, rows = s["policy"], s["policy_cfg"], pr.kto_batch_size * pr.max_length, s["logps_batch"]
    implicit = {"cuda_context": _a("cuda_context_gib"), **_weights(p, pr.quantization, bool(pr.quantization)),
                "trainable_fp32_with_adamw": p["lora"] * 16 / GiB,  # + fp32 logits and their log_softmax:
                "logits_fp32_and_log_softmax": rows * (pr.max_length - 1) * cfg["vocab_size"] * 8 / GiB}
    vram = {f"KTO training step, {tokens} tokens": _train_vram(p, cfg, tokens, pr.quantization,
                                                               pr.gradient_checkpointing, p["lora"], fused_head=True),
            f"held-out implicit rewards, {rows} x {pr.max_length} tokens": implicit}
    drive.update({"kto_adapter_fp32": p["lora"] * 4 / GB, "kto_tokenizer": s["policy_tokenizer"]})
    policy = _model(pr.policy_base)
    return _scoring(pr, hw, s, drive, "05", vram, {"loading the policy": _ram(pr.policy_base)},
                    {"hf_cache_policy": policy["safetensors_gb"] + policy["tokenizer_gb"]})


def _nb06(pr, hw: dict, s: dict, drive: dict) -> dict:
    """GRPO: the 8-bit policy trains while the reward model stays loaded to score (in 8 bit below a 40 GB card).

    Every sequence at grpo_max_prompt_length + grpo_max_completion_length tokens; generation holds a 16-bit KV
    cache for the generation batch (grpo_batch_size x grpo_steps_per_generation sequences); the judge is a head on
    the policy's own reference (no third model); the reference log-probs run the same policy, adapter off.
    """
    p, cfg, rm_q = s["policy"], s["policy_cfg"], "8bit" if hw["scores_in_8bit"] else None
    rm = {"reward_model_resident": sum(_weights(s["rm"], rm_q, prepared=False).values())}
    length = pr.grpo_max_prompt_length + pr.grpo_max_completion_length
    tokens, sequences = pr.grpo_batch_size * length, pr.grpo_batch_size * pr.grpo_steps_per_generation
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    kv = sequences * length * p["layers"] * 2 * cfg["num_key_value_heads"] * head_dim * 2
    policy = {"cuda_context": _a("cuda_context_gib"), **_weights(p, pr.quantization, bool(pr.quantization))}
    vram = {f"GRPO training step, {tokens} tokens": _train_vram(p, cfg, tokens, pr.quantization,
                                                                pr.gradient_checkpointing, p["lora"], fused_head=True)
            | rm,
            f"generation, {sequences} x {length} tokens": policy | rm | {
                "kv_cache_16bit": kv / GiB, "trainable_fp32_with_adamw": p["lora"] * 16 / GiB,
                "last_position_logits_fp32": sequences * cfg["vocab_size"] * 4 / GiB},
            f"scoring {sequences} x {length} tokens": policy | rm | {
                "rm_forward_temporaries": _infer_vram(s["rm"], s["rm_cfg"], sequences * length, rm_q,
                                                      False)["forward_temporaries"]}}
    drive.update({"rl_adapter_fp32": p["lora"] * 4 / GB, "06_outputs": _a("outputs_gb")})
    policy_files = _model(pr.policy_base)
    disk = s["disk"] | {"hf_cache_rm_base": s["rm_cache"], "merged_rm_16bit": s["merged_gb"],
                        "hf_cache_policy": policy_files["safetensors_gb"] + policy_files["tokenizer_gb"]}
    ram = {"shard-by-shard merge on CPU": _ram(pr.rm_base, s["rm"]), "loading the policy": _ram(pr.policy_base),
           "loading the merged RM": _ram(pr.rm_base)}
    return _notebook(vram, ram, disk, drive)


def _no_weights(pr, hw: dict, s: dict, drive: dict, name: str) -> dict:
    """00 reads configs and tokenizers (no weights), 01 the tokenizer, and writes the data."""
    drive.update({"data_jsonl": 3 * KIT_PAIRS.stat().st_size / GB} if name == "01" else {})
    drive[f"{name}_outputs"] = _a("outputs_gb")
    return _notebook({"runtime": {"cuda_context": _a("cuda_context_gib")}},
                     {"runtime": {"python_torch_cuda": _a("ram_baseline_gb")}},
                     s["disk"] | {"tokenizers_and_configs": s["rm_tokenizer"] + s["policy_tokenizer"]}, drive)


def estimate_resources(profile="llama3-8b", hardware="T4") -> dict[str, dict]:
    """Computed (not measured) peaks of every notebook of a GPU profile on Colab hardware.

    Args:
        profile: a profile name or a `Profile` (e.g. `get_profile("llama3-8b", quantization=None)`).
        hardware: a key of `HARDWARE`, or a dict like its values.

    Returns:
        {notebook: {"vram_gib", "ram_gb", "local_disk_gb", "drive_gb", "peak_phase", "components", "phases"}}: each
        resource's peak, its phase, what it is made of, and every phase's total. Drive is cumulative (the run
        folder after the notebook); notebook 03 adds the `max_memory` its 16-bit load needs and what transformers'
        default would give.
    """
    from .kto_train import completion_logps
    from .profiles import get_profile
    from .score import RewardScorer

    pr = get_profile(profile) if isinstance(profile, str) else profile
    hw = HARDWARE[hardware] if isinstance(hardware, str) else hardware
    rm, policy, targets = _model(pr.rm_base), _model(pr.policy_base), tuple(pr.lora_target_modules)
    default = lambda f: inspect.signature(f).parameters["batch_size"].default  # noqa: E731
    s = {"rm": count_parameters(pr.rm_base, "score", pr.lora_r, targets), "rm_cfg": rm["config"],
         "policy": count_parameters(pr.policy_base, "causal_lm", pr.lora_r, targets), "policy_cfg": policy["config"],
         "rm_tokenizer": rm["tokenizer_gb"], "policy_tokenizer": policy["tokenizer_gb"],
         "rm_cache": rm["safetensors_gb"] + rm["tokenizer_gb"], "disk": {"packages": _a("packages_gb")},
         "lm_head_gb": count_parameters(pr.rm_base)["head"] * 2 / GB,
         "score_batch": default(RewardScorer.score_batch), "logps_batch": default(completion_logps)}
    s["merged_gb"] = s["rm"]["total"] * 2 / GB + rm["tokenizer_gb"]
    drive: dict[str, float] = {}
    return {"00_setup": _no_weights(pr, hw, s, drive, "00"), "01_prepare_data": _no_weights(pr, hw, s, drive, "01"),
            "02_train_reward_model": _nb02(pr, hw, s, drive), "03_merge_value_head": _nb03(pr, hw, s, drive),
            "04_score_responses": _scoring(pr, hw, s, drive, "04"), "05_kto_unpaired": _nb05(pr, hw, s, drive),
            "06_rl_with_reward_model": _nb06(pr, hw, s, drive)}


def fits(estimate: dict, hardware="T4", margin: float = 0.9) -> list[str]:
    """The budgets of `hardware` that one notebook's `estimate` exceeds while keeping `margin` of each.

    Returns:
        One message per violation, naming the phase and the largest component of the peak; empty when it fits.
    """
    hw = HARDWARE[hardware] if isinstance(hardware, str) else hardware
    problems = []
    for key in (k for k in NUMBERS if estimate[k] > margin * hw[k]):
        parts = estimate["components"][key]
        top = max(parts, key=parts.get)
        problems.append(f"{key} {estimate[key]:.1f} > {margin:.0%} of {hw[key]:g} during "
                        f"{estimate['peak_phase'][key]} (largest part: {top} {parts[top]:.1f})")
    return problems


def kit_sequence_tokens(path=KIT_PAIRS) -> list[int]:
    """Estimated tokens of every training sequence (prompt + one answer) of the kit's pairs, sorted."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    text = lambda x: x if isinstance(x, str) else " ".join(m["content"] for m in x)  # noqa: E731
    return sorted(len(text(r["prompt"]) + text(r[side])) // _a("chars_per_token") + _a("template_tokens")
                  for r in rows if r.get("split", "train") == "train" for side in ("chosen", "rejected"))


def t4_step_seconds(profile="llama3-8b", tokens_per_sequence: float | None = None) -> float:
    """Computed (not measured) seconds of one optimizer step of notebook 02 on a T4.

    Args:
        tokens_per_sequence: None: the kit's pairs, each micro-batch padded to its longest sequence (the expected
            maximum of its sequences); `profile.max_length` gives the worst case.
    """
    from .profiles import get_profile

    pr = get_profile(profile) if isinstance(profile, str) else profile
    k = 2 * pr.per_device_train_batch_size
    if tokens_per_sequence is None:  # E[max of k draws] = sum_j x_j * ((j+1)^k - j^k) / n^k over sorted lengths
        lengths = kit_sequence_tokens()
        tokens_per_sequence = sum(x * ((j + 1) ** k - j**k) for j, x in enumerate(lengths)) / len(lengths) ** k
    seq, p = min(tokens_per_sequence, pr.max_length), count_parameters(pr.rm_base, "score")
    tokens = k * pr.gradient_accumulation_steps * seq
    forward = tokens * (2 * p["quantized"] + 2 * seq * _model(pr.rm_base)["config"]["hidden_size"] * p["layers"])
    fp16 = _a("t4_fp16_tflops") * 1e12
    forward_rate = fp16 / _a("int8_slowdown") if pr.quantization else fp16
    backward_rate = _a("t4_fp32_tflops") * 1e12 if pr.quantization else fp16  # fp32 inputs: fp32 de-quantised matmul
    return forward * (2 if pr.gradient_checkpointing else 1) / forward_rate + forward / backward_rate


def checkpoint_steps(profile="llama3-8b", minutes: float = 10, train_pairs: int | None = None) -> int:
    """Optimizer steps in about `minutes` of T4 time (computed), clipped to [1, total steps // 2]: a `save_steps`."""
    from .profiles import get_profile

    pr = get_profile(profile) if isinstance(profile, str) else profile
    pairs = train_pairs if train_pairs is not None else len(kit_sequence_tokens()) // 2
    per_epoch = math.ceil(pairs / (pr.per_device_train_batch_size * pr.gradient_accumulation_steps))
    total = math.ceil(per_epoch * pr.num_train_epochs)
    return max(1, min(int(minutes * 60 // t4_step_seconds(pr)), total // 2))
