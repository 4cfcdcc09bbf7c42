"""Smoke runs of the benchmarks on CPU: they must run and save their numbers; the numbers are never asserted."""

import json
import subprocess
import sys

from helpers.env import KIT_ROOT


def test_rm_train_benchmark_smoke_run_on_the_tiny_shape(tmp_path):
    cmd = [sys.executable, str(KIT_ROOT / "benchmarks" / "bench_rm_train.py"), "--shape", "tiny", "--steps", "1",
           "--quant", "8bit", "4bit", "bf16", "--seq", "128", "--pairs", "1", "--checkpointing", "1",
           "--results-dir", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(next(tmp_path.glob("rm_train_tiny_cpu_*.json")).read_text())
    assert [r["quantization"] for r in saved["results"]] == ["8bit", "4bit", "bf16"]
    assert all("error" not in r and r["tokens_per_s"] > 0 for r in saved["results"])
