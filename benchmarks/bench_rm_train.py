"""Benchmark: reward-model training steps with LoRA on an 8-bit / 4-bit / bf16 base — throughput and memory.

    python benchmarks/bench_rm_train.py                      # CPU smoke run: tiny shape, a few steps
    python benchmarks/bench_rm_train.py --shape llama3-8b    # on a GPU: LLaMA-3-8B dimensions, random weights
    python benchmarks/bench_rm_train.py --shape llama3-8b --trainer --quant 8bit --seq 1024 --dtype fp16 bf16
                                                             # notebook 02's own set-up: RewardConfig + RewardTrainer

The model has LLaMA-3-8B's dimensions but random weights made on the machine (nothing is downloaded). Each
configuration (quantisation x sequence length x gradient checkpointing x pairs per device) runs the training
step of notebook 02 — prepare_model_for_kbit_training, LoRA r=8 with task_type SEQ_CLS, the Bradley–Terry loss
under the dtype policy's autocast, AdamW — and records tokens/s and peak GPU memory. With --trainer the step is
notebook 02's own: the llama3-8b profile's RewardConfig (batch, accumulation, checkpointing, fp16/bf16 from the
dtype policy), RewardTrainer with the LoraConfig, keep_trainable_fp32 after TRL's bf16 cast, trainer.train(). Results:
benchmarks/results/rm_train_<shape>_<device>_<date>.json. A benchmark: numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig, LlamaConfig, TrainerCallback

from helpers.env import pick_dtype, quiet_warnings, versions
from helpers.train import bradley_terry_loss

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256),
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=4096),
}


def build_base(shape: str, folder: Path, device: str = "cpu") -> Path:
    """Random weights with the shape's dimensions, saved as a safetensors checkpoint in bf16.

    Made on the GPU when there is one: 8B random values take minutes on a CPU, seconds on a GPU.
    """
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=2048, pad_token_id=0, num_labels=1)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return folder


def _quant(name: str, dtype) -> BitsAndBytesConfig | None:
    if name == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if name == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype)
    return None


def run_config(base: Path, quant: str, seq: int, checkpointing: bool, pairs: int, steps: int, device: str) -> dict:
    """Train `steps` optimizer steps (after one warm-up step) and measure them."""
    choice = pick_dtype(device)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=1, quantization_config=_quant(quant, choice.dtype), dtype=choice.dtype,
        device_map={"": 0} if device == "cuda" else None, use_safetensors=True)
    if quant != "bf16":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.gradient_checkpointing_enable()
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, task_type="SEQ_CLS"))
    if checkpointing:
        model.enable_input_require_grads()
    # from_pretrained returns the model in eval mode, where transformers skips gradient checkpointing: without
    # train() every layer's activations are kept (the H200 run of 2026-12-04 measured 74.9 GiB for 2 pairs x 1024).
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(1, model.config.vocab_size, (2 * pairs, seq), device=model.device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 1):
        if step == 1:  # the first step compiles kernels and allocates: not timed
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=choice.dtype):
            rewards = model(input_ids=ids).logits.squeeze(-1).float()
        loss = bradley_terry_loss(*rewards.chunk(2))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    del model, optimizer
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"quantization": quant, "seq": seq, "gradient_checkpointing": checkpointing, "pairs_per_device": pairs,
            "dtype": choice.name, "steps": steps, "seconds": round(seconds, 3),
            "tokens_per_s": round(2 * pairs * seq * steps / seconds, 1),
            "peak_gpu_memory_gib": round(peak, 2) if peak is not None else None}


# --variant: what differs from notebook 02's RewardConfig (gradient-checkpointing memory experiments)
VARIANTS = {"notebook": {},
            "reentrant": {"gradient_checkpointing_kwargs": {"use_reentrant": True}},
            "no-trainer-gc": {"gradient_checkpointing": False}}


class _StepTimer(TrainerCallback):
    """Times each optimizer step (CUDA synchronised); the caller leaves the first one out."""

    def __init__(self, device: str):
        self.device, self.seconds, self._start = device, [], 0.0

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.seconds.append(time.perf_counter() - self._start)


def _random_pairs(n: int, seq: int, vocab: int, pad_id: int, seed: int = 0):
    """`n` pre-tokenized pairs of exactly `seq` tokens (RewardTrainer keeps `chosen_ids`/`rejected_ids` as given)."""
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(300, vocab, (2 * n, seq), generator=g)
    ids[ids == pad_id] = pad_id + 1
    return Dataset.from_dict({"chosen_ids": ids[:n].tolist(), "rejected_ids": ids[n:].tolist()})


def run_trainer_config(base: Path, quant: str, seq: int, dtype_name: str, steps: int, device: str,
                       accumulation: int | None = None, keep_fp32: bool = True, variant: str = "notebook") -> dict:
    """Notebook 02's set-up on the llama3-8b profile, one warm-up + `steps` optimizer steps of trainer.train()."""
    from trl import RewardConfig, RewardTrainer

    from helpers.env import dtype_policy
    from helpers.profiles import get_profile
    from helpers.tiny import build_tokenizer, kit_texts
    from helpers.train import check_trainable_fp32, keep_trainable_fp32, prepare_reward_tokenizer

    profile, dtype = get_profile("llama3-8b"), dtype_policy(dtype_name)
    accumulation = accumulation or profile.gradient_accumulation_steps
    texts = [m["content"] for conv in kit_texts() for m in conv]
    tokenizer = prepare_reward_tokenizer(build_tokenizer(texts, "llama3"))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loaded = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=1, quantization_config=_quant(quant, dtype.dtype), dtype=dtype.dtype,
        device_map={"": 0} if device == "cuda" else None, use_safetensors=True)
    load_seconds = time.perf_counter() - loaded
    load_peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    loaded_gib = torch.cuda.memory_allocated() / 2**30 if device == "cuda" else None
    model.config.pad_token_id = tokenizer.pad_token_id
    if quant != "bf16":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=profile.gradient_checkpointing)
    lora = LoraConfig(r=profile.lora_r, lora_alpha=profile.lora_alpha, lora_dropout=profile.lora_dropout,
                      target_modules=list(profile.lora_target_modules), task_type="SEQ_CLS")
    pairs = profile.per_device_train_batch_size * accumulation * (steps + 1)
    with tempfile.TemporaryDirectory() as out:
        args = RewardConfig(
            output_dir=out, seed=0, max_length=seq, learning_rate=profile.learning_rate, max_steps=steps + 1,
            per_device_train_batch_size=profile.per_device_train_batch_size,
            gradient_accumulation_steps=accumulation, bf16=dtype.bf16, fp16=dtype.fp16, use_cpu=device == "cpu",
            disable_dropout=True, eval_strategy="no", save_strategy="no", logging_steps=1, report_to="none",
            **{"gradient_checkpointing": profile.gradient_checkpointing, **VARIANTS[variant]})
        timer = _StepTimer(device)
        trainer = RewardTrainer(model=model, args=args, processing_class=tokenizer, peft_config=lora,
                                train_dataset=_random_pairs(pairs, seq, 4000, tokenizer.pad_token_id),
                                callbacks=[timer])
        cast = keep_trainable_fp32(trainer.model) if keep_fp32 else {"kept as TRL cast them": True}
        if keep_fp32:
            check_trainable_fp32(trainer.model)
        if device == "cuda":  # the loading peak is recorded apart (load_peak_gpu_memory_gib)
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    timed = sum(timer.seconds[1:])  # the first step compiles kernels and allocates: not timed
    tokens = 2 * profile.per_device_train_batch_size * accumulation * seq * steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    reserved = torch.cuda.max_memory_reserved() / 2**30 if device == "cuda" else None
    del trainer, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"mode": "RewardTrainer (notebook 02's set-up)", "variant": variant, "quantization": quant, "seq": seq,
            "dtype": dtype.name, "fp16": dtype.fp16, "bf16": dtype.bf16,
            "gradient_checkpointing": args.gradient_checkpointing,
            "pairs_per_device": profile.per_device_train_batch_size, "gradient_accumulation_steps": accumulation,
            "trainable_cast_by_trl": cast, "steps": steps, "first_step_seconds": round(timer.seconds[0], 3),
            "step_seconds": [round(s, 3) for s in timer.seconds[1:]], "load_seconds": round(load_seconds, 1),
            "tokens_per_s": round(tokens / timed, 1), "losses": losses,
            "peak_gpu_memory_gib": round(peak, 2) if peak is not None else None,
            "peak_gpu_reserved_gib": round(reserved, 2) if reserved is not None else None,
            "load_peak_gpu_memory_gib": round(load_peak, 2) if load_peak is not None else None,
            "after_load_gpu_memory_gib": round(loaded_gib, 2) if loaded_gib is not None else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="tiny")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quant", nargs="*", default=["8bit", "4bit", "bf16"])
    parser.add_argument("--seq", nargs="*", type=int, default=[512, 1024])
    parser.add_argument("--pairs", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--checkpointing", nargs="*", type=int, default=[1, 0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--trainer", action="store_true", help="notebook 02's RewardConfig + RewardTrainer step")
    parser.add_argument("--dtype", nargs="*", default=["auto"], help="with --trainer: auto, fp16 (a T4's), bf16")
    parser.add_argument("--accumulation", type=int, default=None, help="with --trainer: default the profile's")
    parser.add_argument("--variant", nargs="*", default=["notebook"], choices=list(VARIANTS))
    parser.add_argument("--trl-cast", action="store_true",
                        help="with --trainer: skip keep_trainable_fp32 (shows the CUDA GradScaler crash under fp16)")
    args = parser.parse_args()
    quiet_warnings()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        built = time.perf_counter()
        base = build_base(args.shape, Path(tmp) / "base", device)
        print(f"built the {args.shape}-shaped base in {time.perf_counter() - built:.0f} s", flush=True)
        grid = (itertools.product(args.quant, args.seq, args.dtype, args.variant) if args.trainer else
                itertools.product(args.quant, args.seq, args.checkpointing, args.pairs))
        for combo in grid:
            try:
                if args.trainer:
                    quant, seq, dtype_name, variant = combo
                    row = run_trainer_config(base, quant, seq, dtype_name, args.steps, device, args.accumulation,
                                             not args.trl_cast, variant)
                else:
                    quant, seq, ckpt, pairs = combo
                    row = run_config(base, quant, seq, bool(ckpt), pairs, args.steps, device)
            except (RuntimeError, ValueError) as err:  # out of memory, or a path this build lacks: recorded
                row = {"combination": list(combo), "error": f"{type(err).__name__}: {str(err)[:300]}"}
                if device == "cuda":
                    torch.cuda.empty_cache()
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"benchmark": "rm_train", "shape": args.shape, "dims": SHAPES[args.shape],
              "date": date.today().isoformat(), "device": device,
              "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
              "versions": versions(), "lora": {"r": 8, "alpha": 16, "task_type": "SEQ_CLS"}, "results": rows}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    mode = ("_trainer" + ("_trlcast" if args.trl_cast else "")) if args.trainer else ""
    out = args.results_dir / f"rm_train_{args.shape}{mode}_{device}_{result['date']}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
