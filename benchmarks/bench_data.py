"""Benchmark: loading + validation and the tokenizing length audit on 100k synthetic preference pairs.

    python benchmarks/bench_data.py                 # 100k pairs -> benchmarks/results/data_<date>.json
    python benchmarks/bench_data.py --pairs 20000

Targets on a 2-core CPU: loading + validation >= 20k pairs/s, audit >= 5k pairs/s. The audit is bounded by
the fast tokenizer itself, so the run also times the bare tokenizer on the same rendered texts
(`tokenizer_only_pairs_per_s`): the ceiling for any exact count. A benchmark, not a test: nothing here
asserts on time. Numbers move with machine load (recorded as load_average_1m): compare runs on a quiet
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import tempfile
import time
from datetime import date
from pathlib import Path

from helpers.audit import audit_lengths
from helpers.data import load_preferences
from helpers.env import KIT_ROOT, versions
from helpers.tiny import build_tokenizer, kit_texts
from helpers.train import prepare_reward_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"load_pairs_per_s": 20_000, "audit_pairs_per_s": 5_000}
SENTENCE = re.compile(r"(?<=[.!?。!?])\s*")


def _sentences(text: str) -> list[str]:
    return [s for s in SENTENCE.split(text) if s.strip()]


def write_pairs(path: Path, n_pairs: int, seed: int = 0) -> Path:
    """n_pairs distinct plain pairs as JSONL, made by reshuffling the sentences of the kit's own pairs.

    Lengths, language mix (about 18% Chinese) and vocabulary are then like the kit's.
    """
    rng = random.Random(seed)
    lines = (KIT_ROOT / "data" / "preferences.jsonl").read_text("utf-8").splitlines()
    kit = [json.loads(line) for line in lines]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_pairs):
            row = rng.choice(kit)
            answers = [_sentences(row[side]) for side in ("chosen", "rejected")]
            for sentences in answers:
                rng.shuffle(sentences)
            f.write(json.dumps({"id": f"synthetic-{i:06d}", "category": row["category"],
                                "prompt": f"{row['prompt']} (#{i})", "chosen": " ".join(answers[0]),
                                "rejected": " ".join(answers[1]), "split": "train" if i % 5 else "test"},
                               ensure_ascii=False) + "\n")
    return path


def _tokenizer_only_seconds(dataset, tokenizer, batch_size: int = 1000) -> float:
    """Seconds the fast tokenizer alone takes on both sides' rendered texts (rendering not timed)."""
    texts = [t for side in ("chosen", "rejected")
             for t in tokenizer.apply_chat_template([p + a for p, a in zip(dataset["prompt"], dataset[side],
                                                                          strict=True)], tokenize=False)]
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        tokenizer.backend_tokenizer.encode_batch_fast(texts[i: i + batch_size], add_special_tokens=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args(argv)
    tokenizer = prepare_reward_tokenizer(build_tokenizer([m["content"] for conv in kit_texts("train") for m in conv]))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_pairs(Path(tmp) / "pairs.jsonl", args.pairs)
        start = time.perf_counter()
        dataset, report = load_preferences(path)
        load_s = time.perf_counter() - start
    start = time.perf_counter()
    audit = audit_lengths(dataset, tokenizer, args.max_length)
    audit_s = time.perf_counter() - start
    bare_s = _tokenizer_only_seconds(dataset, tokenizer)
    result = {
        "date": date.today().isoformat(), "benchmark": "data",
        "device": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                   "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "versions": versions(), "pairs": args.pairs, "kept": report["kept"], "dropped": report["dropped"],
        "load_seconds": round(load_s, 2), "load_pairs_per_s": round(args.pairs / load_s),
        "audit_seconds": round(audit_s, 2), "audit_pairs_per_s": round(args.pairs / audit_s),
        "tokenizer_only_seconds": round(bare_s, 2), "tokenizer_only_pairs_per_s": round(args.pairs / bare_s),
        "audit_max_length": args.max_length, "over_max_length": audit["over_max_length"], "targets": TARGETS,
    }
    result["meets_targets"] = {k: result[k] >= v for k, v in TARGETS.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"data_{result['date']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}, indent=2))
    print(f"saved {out}")
    return result


if __name__ == "__main__":
    main()
