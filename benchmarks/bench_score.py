"""Benchmark: `RewardScorer.score_batch` (length-sorted batches) vs scoring one response at a time.

    python benchmarks/bench_score.py                  # tiny model, CPU (or CUDA when present)
    python benchmarks/bench_score.py --pairs 256 --batch-size 32

Both paths must give the same rewards (checked, within 1e-4 in fp32); the number that matters is the
speed-up (target >= 8x). Results go to benchmarks/results/score_<device>_<date>.json. A benchmark, not
a test: nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
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
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model.save_pretrained(root / "rm")
    for f in base.glob("*token*"):
        (root / "rm" / f.name).write_bytes(f.read_bytes())
    return root / "rm"


def _items(n_pairs: int) -> list[tuple[str, str]]:
    rows = [json.loads(x) for x in (KIT_ROOT / "data" / "preferences.jsonl").read_text("utf-8").splitlines()]
    items = [(r["prompt"], r[side]) for r in rows for side in ("chosen", "rejected")]
    return (items * (1 + 2 * n_pairs // len(items)))[: 2 * n_pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    quiet_warnings()
    with tempfile.TemporaryDirectory() as tmp:
        scorer = RewardScorer.from_pretrained(_reward_model_dir(Path(tmp)))
        items = _items(args.pairs)
        scorer.score_batch(items[:8])  # warm-up
        start = time.perf_counter()
        single = np.array([scorer.score(p, r) for p, r in items])
        single_s = time.perf_counter() - start
        start = time.perf_counter()
        batched = scorer.score_batch(items, batch_size=args.batch_size)
        batch_s = time.perf_counter() - start
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
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"score_{device.split(':')[0]}_{result['date']}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("device", "single_pairs_per_s", "batch_pairs_per_s", "speedup",
                                             "max_abs_diff")}))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
