"""Benchmark: reward-model training steps with LoRA on an 8-bit / 4-bit / bf16 base — throughput and memory.

    python benchmarks/bench_rm_train.py                      # CPU smoke run: tiny shape, a few steps
    python benchmarks/bench_rm_train.py --shape llama3-8b    # on a GPU: LLaMA-3-8B dimensions, random weights

The model has LLaMA-3-8B's dimensions but random weights made on the machine (nothing is downloaded). Each
configuration (quantisation x sequence length x gradient checkpointing x pairs per device) runs the training
step of notebook 02 — prepare_model_for_kbit_training, LoRA r=8 with task_type SEQ_CLS, the Bradley–Terry loss
under the dtype policy's autocast, AdamW — and records tokens/s and peak GPU memory. Results:
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
from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig, LlamaConfig

from helpers.env import pick_dtype, quiet_warnings, versions
from helpers.train import bradley_terry_loss

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256),
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=4096),
}


def build_base(shape: str, folder: Path) -> Path:
    """Random weights with the shape's dimensions, saved as a safetensors checkpoint in bf16."""
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=2048, pad_token_id=0, num_labels=1)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="tiny")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quant", nargs="*", default=["8bit", "4bit", "bf16"])
    parser.add_argument("--seq", nargs="*", type=int, default=[512, 1024])
    parser.add_argument("--pairs", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--checkpointing", nargs="*", type=int, default=[1, 0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    quiet_warnings()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = build_base(args.shape, Path(tmp) / "base")
        for quant, seq, ckpt, pairs in itertools.product(args.quant, args.seq, args.checkpointing, args.pairs):
            try:
                row = run_config(base, quant, seq, bool(ckpt), pairs, args.steps, device)
            except (RuntimeError, ValueError) as err:  # out of memory, or a path this build lacks: recorded
                row = {"quantization": quant, "seq": seq, "gradient_checkpointing": bool(ckpt),
                       "pairs_per_device": pairs, "error": f"{type(err).__name__}: {str(err)[:160]}"}
                if device == "cuda":
                    torch.cuda.empty_cache()
            print(json.dumps(row))
            rows.append(row)
    result = {"benchmark": "rm_train", "shape": args.shape, "dims": SHAPES[args.shape],
              "date": date.today().isoformat(), "device": device,
              "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
              "versions": versions(), "lora": {"r": 8, "alpha": 16, "task_type": "SEQ_CLS"}, "results": rows}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"rm_train_{args.shape}_{device}_{result['date']}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
