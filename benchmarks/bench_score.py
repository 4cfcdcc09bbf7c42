"""Benchmark: `RewardScorer.score_batch` vs one response at a time, vs transformers' pipeline, and the CLI.

    python benchmarks/bench_score.py                  # tiny model, CPU (or CUDA when present)
    python benchmarks/bench_score.py --pairs 256 --batch-size 32   # default: 16, as score_batch
    python benchmarks/bench_score.py --sweep          # also: the same ratio for other model widths
    python benchmarks/bench_score.py --cli-rows 2000 200000       # the CLI's peak memory (RSS) at two sizes

Measured side by side in one run, same items, same batch size, same rewards (checked within 1e-4 in fp32):
- `score_batch` vs `score` one at a time (target speed-up >= 8x);
- `score_batch` vs `pipeline("text-classification", function_to_apply="none")` (target: ratio >= 1);
- the scoring CLI (`python -m helpers.score_cli`, its own rows/s, model loading excluded) vs `score_batch` on the
  same rows (target: >= 0.9), and the CLI's peak RSS on short inputs of each `--cli-rows` size (target: the
  largest within a few MB of the smallest: the CLI streams).
Results go to benchmarks/results/score_<device>_<date>.json. A benchmark, not a test: nothing asserts on time.
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

from helpers.env import KIT_ROOT, quiet_warnings, versions
from helpers.score import RewardScorer
from helpers.tiny import build_tiny_model, save_random_head_reward_model

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SPEEDUP = 8.0


def _reward_model_dir(root: Path) -> Path:
    """A tiny LLaMA-3-style reward model directory (untrained base, a fixed random head)."""
    build_tiny_model("llama3", root / "base", seed=0, warmup_steps=0)
    return save_random_head_reward_model(root / "base", root / "rm", seed=0)


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


def time_pipeline(model_dir: Path, scorer: RewardScorer, items, batch_size: int) -> dict:
    """transformers' own text-classification pipeline on the chat-templated texts, then score_batch again."""
    from transformers import pipeline

    texts = [scorer.tokenizer.decode(scorer.tokens(p, r)) for p, r in items]
    classify = pipeline("text-classification", model=str(model_dir), device=scorer.model.device,
                        function_to_apply="none")
    kwargs = {"batch_size": batch_size, "tokenizer_kwargs": {"add_special_tokens": False}}
    classify(texts[:8], **kwargs)  # warm-up
    start = time.perf_counter()
    rewards = np.array([out["score"] for out in classify(texts, **kwargs)])
    pipeline_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = scorer.score_batch(items, batch_size=batch_size)
    return {"pipeline_s": pipeline_s, "batch_s": time.perf_counter() - start,
            "max_abs_diff": float(np.abs(rewards - batched).max())}


def cuda_dtype_drift(model_dir: Path, items, batch_size: int) -> dict:
    """On CUDA: max |reward - fp32 reward| when the model runs in fp16 (a T4) and in bf16 (A100/H100 class)."""
    reference = RewardScorer.from_pretrained(model_dir, device="cuda")
    reference.model.float()
    fp32 = reference.score_batch(items, batch_size=batch_size)
    drift = {}
    for dtype in (torch.float16, torch.bfloat16):
        reference.model.to(dtype)
        drift[str(dtype).removeprefix("torch.")] = float(np.abs(reference.score_batch(items, batch_size) - fp32).max())
    drift["reward_scale"] = float(np.abs(fp32).max())
    return drift


def run_cli(model_dir: Path, rows: list[tuple[str, str]], batch_size: int, tmp: Path) -> dict:
    """Run `python -m helpers.score_cli` on `rows` in a child process: its rows/s (as it reports) and peak RSS."""
    import re
    import subprocess
    import sys

    from helpers.env import kit_subprocess_env

    src, out = tmp / f"cli_{len(rows)}.jsonl", tmp / f"cli_{len(rows)}.scores.jsonl"
    with src.open("w", encoding="utf-8") as f:
        for i, (prompt, response) in enumerate(rows):
            f.write(json.dumps({"id": i, "prompt": prompt, "response": response}, ensure_ascii=False) + "\n")
    out.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "helpers.score_cli", "--model", str(model_dir), "--input", str(src),
                             "--output", str(out), "--batch-size", str(batch_size)], env=kit_subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    assert status == 0, stdout
    rate = float(re.search(r"\(([\d.]+) rows/s", stdout).group(1))
    scores = {r["id"]: r["reward"] for r in map(json.loads, out.read_text("utf-8").splitlines())}
    assert len(scores) == len(rows), (len(scores), len(rows))
    return {"rows": len(rows), "rows_per_s": rate, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "scores": np.array([scores[i] for i in range(len(rows))])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sweep", action="store_true", help="also measure other model widths (SWEEP_SHAPES)")
    parser.add_argument("--cli-rows", type=int, nargs="*", default=[2000, 200_000],
                        help="input sizes for the CLI's peak-memory runs (short rows)")
    args = parser.parse_args()
    quiet_warnings()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _reward_model_dir(Path(tmp))
        scorer = RewardScorer.from_pretrained(model_dir)
        scorer.model.float()  # fp32 on CUDA too, so every path is compared at one precision (drift: below)
        items = _items(args.pairs)
        timed = time_both_paths(scorer, items, args.batch_size)
        single, single_s, batched, batch_s = (timed[k] for k in ("single", "single_s", "batched", "batch_s"))
        vs_pipeline = time_pipeline(model_dir, scorer, items, args.batch_size)
        cli_same = run_cli(model_dir, items, args.batch_size, Path(tmp))
        as_cli = RewardScorer.from_pretrained(model_dir)  # the CLI's own set-up: on CUDA, the dtype policy's dtype
        as_cli.score_batch(items[:8])
        start = time.perf_counter()
        cli_reference = as_cli.score_batch(items, batch_size=args.batch_size)
        batch_again_s = time.perf_counter() - start
        short = [("Hi", "Hello!"), ("2+2?", "4."), ("你好", "你好!")]
        memory = [run_cli(model_dir, (short * (n // 3 + 1))[:n], args.batch_size, Path(tmp)) for n in args.cli_rows]
        sweep = shape_sweep(scorer, items, args.batch_size) if args.sweep else None
        drift = cuda_dtype_drift(model_dir, items, args.batch_size) if torch.cuda.is_available() else None
    cli_diff = float(np.abs(cli_same["scores"] - cli_reference).max())
    # CPU fp32: the same arithmetic up to summation order. CUDA "fp32": kernels chosen per batch shape (the
    # pipeline pads batches in input order, score_batch by length) round differently; recorded, looser bound.
    tolerance = 1e-4 if not torch.cuda.is_available() else 1e-2
    assert vs_pipeline["max_abs_diff"] <= tolerance and cli_diff <= tolerance, (vs_pipeline["max_abs_diff"], cli_diff)
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
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "vs_pipeline": {"pipeline_responses_per_s": round(len(items) / vs_pipeline["pipeline_s"], 1),
                        "score_batch_responses_per_s": round(len(items) / vs_pipeline["batch_s"], 1),
                        "ratio": round(vs_pipeline["pipeline_s"] / vs_pipeline["batch_s"], 2), "target_ratio": 1.0,
                        "max_abs_diff": vs_pipeline["max_abs_diff"]},
        "cli": {"responses_per_s": cli_same["rows_per_s"],
                "score_batch_responses_per_s": round(len(items) / batch_again_s, 1),
                "ratio": round(cli_same["rows_per_s"] * batch_again_s / len(items), 2), "target_ratio": 0.9,
                "max_abs_diff": cli_diff,
                "peak_rss_mb": {str(m["rows"]): m["peak_rss_mb"] for m in memory},
                "rss_growth_mb": round(memory[-1]["peak_rss_mb"] - memory[0]["peak_rss_mb"], 1) if memory else None},
    }
    if sweep:
        result["shape_sweep"] = sweep
    if drift:
        result["cuda_dtype_drift"] = drift
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"score_{device.split(':')[0]}_{result['date']}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("device", "single_pairs_per_s", "batch_pairs_per_s", "speedup",
                                             "max_abs_diff", "vs_pipeline", "cli")}, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
