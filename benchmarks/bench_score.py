"""Benchmark: `RewardScorer.score_batch` (length-sorted batches) vs scoring one response at a time.

    python benchmarks/bench_score.py                  # tiny model, CPU (or CUDA when present)
    python benchmarks/bench_score.py --pairs 256 --batch-size 32   # default: 16, as score_batch
    python benchmarks/bench_score.py --sweep          # also: the same ratio for other model widths

Both paths must give the same rewards (checked, within 1e-4 in fp32); the number that matters is the
speed-up (target >= 8x). Results go to benchmarks/results/score_<device>_<date>.json. A benchmark, not
a test: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

from helpers.env import KIT_ROOT, quiet_warnings, versions
from helpers.score import RewardScorer
from helpers.tiny import build_tiny_model

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SPEEDUP = 8.0


def _reward_model_dir(root: Path) -> Path:
    """A tiny LLaMA-3-style reward model directory (warm-up weights, a fixed random head)."""
    base = root / "base"
    build_tiny_model("llama3", base, seed=0, warmup_steps=0)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, use_safetensors=True)
    model.save_pretrained(root / "rm")
    for f in base.glob("*token*"):
        (root / "rm" / f.name).write_bytes(f.read_bytes())
    return root / "rm"


def _items(n_pairs: int) -> list[tuple[str, str]]:
    rows = [json.loads(x) for x in (KIT_ROOT / "data" / "preferences.jsonl").read_text("utf-8").splitlines()]
    items = [(r["prompt"], r[side]) for r in rows for side in ("chosen", "rejected")]
    return (items * (1 + 2 * n_pairs // len(items)))[: 2 * n_pairs]


SWEEP_SHAPES = ((32, 2), (64, 2), (128, 4), (256, 4))  # (hidden size, layers); (128, 4) is the tiny model


def time_both_paths(scorer: RewardScorer, items, batch_size: int) -> dict:
    """`scorer.score` one item at a time, then `scorer.score_batch` on all of them: seconds and rewards."""
    scorer.score_batch(items[:8])  # warm-up
    start = time.perf_counter()
    single = np.array([scorer.score(p, r) for p, r in items])
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = scorer.score_batch(items, batch_size=batch_size)
    return {"single": single, "single_s": single_s, "batched": batched, "batch_s": time.perf_counter() - start}


def shape_sweep(scorer: RewardScorer, items, batch_size: int) -> list[dict]:
    """The batching speed-up for random-weight LLaMA models of other widths, same tokenizer and items.

    It tells whether the ceiling is the scorer's batching or the hardware: if even a model 4x narrower than
    the tiny one stays far below the target, one-at-a-time scoring is not mostly per-call overhead here.
    """
    from transformers import LlamaConfig, LlamaForSequenceClassification

    rows = []
    for hidden, layers in SWEEP_SHAPES:
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(scorer.tokenizer), hidden_size=hidden, intermediate_size=3 * hidden,
                             num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, num_labels=1)
        model = LlamaForSequenceClassification(config)
        timed = time_both_paths(RewardScorer(model, scorer.tokenizer), items, batch_size)
        rows.append({"hidden": hidden, "layers": layers, "parameters": sum(p.numel() for p in model.parameters()),
                     "single_ms_per_response": round(1000 * timed["single_s"] / len(items), 2),
                     "batch_ms_per_response": round(1000 * timed["batch_s"] / len(items), 2),
                     "speedup": round(timed["single_s"] / timed["batch_s"], 2)})
        print(rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sweep", action="store_true", help="also measure other model widths (SWEEP_SHAPES)")
    args = parser.parse_args()
    quiet_warnings()
    with tempfile.TemporaryDirectory() as tmp:
        scorer = RewardScorer.from_pretrained(_reward_model_dir(Path(tmp)))
        items = _items(args.pairs)
        timed = time_both_paths(scorer, items, args.batch_size)
        single, single_s, batched, batch_s = (timed[k] for k in ("single", "single_s", "batched", "batch_s"))
        sweep = shape_sweep(scorer, items, args.batch_size) if args.sweep else None
    max_diff = float(np.abs(single - batched).max())
    assert max_diff <= 1e-4, f"batched and single scores differ by {max_diff}"
    device = str(next(scorer.model.parameters()).device)
    result = {
        "benchmark": "score_batch_vs_single", "date": date.today().isoformat(), "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "versions": versions(), "model": "tiny-llama3 (1.8M params)", "pairs": args.pairs,
        "responses": len(items), "batch_size": args.batch_size,
        "single_pairs_per_s": round(args.pairs / single_s, 1), "batch_pairs_per_s": round(args.pairs / batch_s, 1),
        "speedup": round(single_s / batch_s, 2), "target_speedup": TARGET_SPEEDUP, "max_abs_diff": max_diff,
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }
    if sweep:
        result["shape_sweep"] = sweep
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"score_{device.split(':')[0]}_{result['date']}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("device", "single_pairs_per_s", "batch_pairs_per_s", "speedup",
                                             "max_abs_diff")}))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
