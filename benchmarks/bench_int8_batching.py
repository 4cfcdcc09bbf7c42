"""Measurement: how much a reward depends on its batch partners, in 8-bit and in full precision.

    python benchmarks/bench_int8_batching.py runs/<run>        # a run folder that has been through notebook 02

Loads the run's reward-model base twice, in 8-bit as notebook 02 holds it after training (LLM.int8, threshold 6,
LoRA and head in bf16 as TRL leaves them, bf16 autocast) and in full precision (fp32, no quantization), puts the
run's trained adapter on each, and scores the held-out pairs that notebook 02 evaluated three ways:
- `sorted`: each side in its own batches, shortest first (`score_pairs`, notebook 02's per-pair accuracy);
- `alone`: one sequence per forward pass, no padding;
- `trainer`: TRL's batches, each batch's chosen and rejected padded together (`trainer_batch_accuracies`).
It records the accuracy each way (on the pairs within max_length) and the largest difference in reward and in
margin between batchings. Results: benchmarks/results/int8_batching_<profile>_<device>_<date>.json. Notebook 02 cites
them for "a reward depends on the batch it is computed in".
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np
import torch

from helpers.env import quiet_warnings, versions
from helpers.score import render_ids, score_pairs, trainer_batch_rewards

RESULTS = Path(__file__).resolve().parent / "results"


def _load(base: Path, adapter: Path, tokenizer, eight_bit: bool):
    """The trained reward model as notebook 02 holds it when it scores, or the same adapter on a full-precision base.

    8-bit: loaded in bf16 with LLM.int8 weights, `prepare_model_for_kbit_training` (every remaining 16-bit parameter
    to fp32), the adapter on top, and the adapter and head in bf16 as `RewardTrainer(bf16=True)` leaves them
    (PITFALLS: "TRL's bf16 cast"); `_forward` then autocasts to bf16, as in the notebook."""
    from peft import PeftModel, prepare_model_for_kbit_training
    from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(load_in_8bit=True) if eight_bit else None
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=1, quantization_config=quantization, use_safetensors=True,
        dtype=torch.bfloat16 if eight_bit else torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    if eight_bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = PeftModel.from_pretrained(model, adapter)
    if eight_bit:
        for name, p in model.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                p.data = p.data.to(torch.bfloat16)
    return model.eval()


def measure(model, tokenizer, pairs, max_length: int, batch_size: int) -> dict:
    chosen_ids = [render_ids(tokenizer, r["prompt"], r["chosen"]) for r in pairs]
    rejected_ids = [render_ids(tokenizer, r["prompt"], r["rejected"]) for r in pairs]
    kept = np.array([len(c) <= max_length and len(r) <= max_length for c, r in zip(chosen_ids, rejected_ids,
                                                                                   strict=True)])
    ways = {"sorted": score_pairs(model, tokenizer, pairs, batch_size=batch_size),
            "alone": score_pairs(model, tokenizer, pairs, batch_size=1),
            "trainer": trainer_batch_rewards(model, tokenizer.pad_token_id,
                                             [c for c, k in zip(chosen_ids, kept, strict=True) if k],
                                             [r for r, k in zip(rejected_ids, kept, strict=True) if k], batch_size)}
    for way in ("sorted", "alone"):
        ways[way] = {side: ways[way][side][kept] for side in ("chosen", "rejected")}
    margins = {w: v["chosen"] - v["rejected"] for w, v in ways.items()}
    out = {"pairs": int(kept.sum()),
           "accuracy": {w: round(float(np.mean(m > 0)), 4) for w, m in margins.items()},
           "max_abs_reward_diff_vs_alone": {}, "max_abs_margin_diff_vs_alone": {}}
    for way in ("sorted", "trainer"):
        out["max_abs_reward_diff_vs_alone"][way] = round(float(max(
            np.abs(ways[way][s] - ways["alone"][s]).max() for s in ("chosen", "rejected"))), 6)
        out["max_abs_margin_diff_vs_alone"][way] = round(float(np.abs(margins[way] - margins["alone"]).max()), 6)
    out["median_abs_margin_alone"] = round(float(np.median(np.abs(margins["alone"]))), 4)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--seed", type=int, default=42, help="the run's SEED (it drew the held-out subset)")
    args = parser.parse_args(argv)
    quiet_warnings()
    from datasets import load_dataset
    from transformers import AutoTokenizer

    from helpers.data import heldout_subset
    from helpers.profiles import get_profile
    from helpers.train import prepare_reward_tokenizer

    run = Path(args.run_dir)
    rm = json.loads((run / "metrics" / "02_train_reward_model.json").read_text())
    profile = get_profile(rm["profile"])
    base = Path(profile.model_path("rm_base", run))
    if not base.is_dir():
        raise SystemExit(f"{base} not found: this measurement needs a run with a local base ({profile.name})")
    test = load_dataset("json", data_files=str(run / "data" / "test.jsonl"), split="train")
    test = heldout_subset(test, profile.heldout_limit, seed=args.seed, what="held-out pairs")
    tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(base))
    result = {"profile": profile.name, "run": run.name, "seed": args.seed, "device": "cpu",
              "cpu": platform.processor() or "unknown", "torch_threads": torch.get_num_threads(),
              "versions": versions(), "date": date.today().isoformat()}
    for label, eight_bit in (("int8", True), ("fp32", False)):
        model = _load(base, run / "rm_adapter", tokenizer, eight_bit)
        result[label] = measure(model, tokenizer, test, profile.max_length, profile.eval_batch_size)
        print(label, json.dumps(result[label]))
        del model
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"int8_batching_{profile.name}_cpu_{date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
