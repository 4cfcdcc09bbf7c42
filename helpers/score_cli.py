"""`python -m helpers.score`: score a JSONL file of (prompt, response) rows with a trained reward model.

    python -m helpers.score --model runs/x/rm_merged --input in.jsonl --output out.jsonl [--batch-size 16]

Each input line is {"prompt": str | messages, "response": str | messages, ...}. Each output line is
{"line": n, "id": ..., "reward": r, "reward_normalized": z}; inputs longer than
the model's max_length are truncated and counted. Bad lines are reported
with their number and reason and skipped; a rerun appends only the lines not scored yet. The exit code
is non-zero only when nothing could be scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _check(row, line: int) -> str | None:
    """The reason a row cannot be scored, or None."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    for field in ("prompt", "response"):
        value = row.get(field)
        if value is None:
            return f"field '{field}': missing"
        if isinstance(value, str):
            if not value.strip():
                return f"field '{field}': empty text"
        elif not (isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value)):
            return f"field '{field}': expected a string or a list of messages, got {type(value).__name__}"
    return None


def read_rows(path: Path) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    """Good rows as (line, row) and bad ones as (line, reason); every line lands in exactly one list."""
    good, bad = [], []
    for line, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            bad.append((line, f"undecodable bytes ({err.reason})"))
            continue
        except json.JSONDecodeError as err:
            bad.append((line, f"malformed JSON ({err.msg})"))
            continue
        reason = _check(row, line)
        if reason:
            bad.append((line, reason))
        else:
            good.append((line, row))
    return good, bad


def _already_scored(output: Path) -> set[int]:
    if not output.exists():
        return set()
    done = set()
    for raw in output.read_text(encoding="utf-8").splitlines():
        try:
            done.add(int(json.loads(raw)["line"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by an interrupted write: scored again
    return done


def check_arguments(args) -> str | None:
    """What is wrong with the command line, or None; checked before the model is loaded."""
    if args.batch_size < 1:
        return f"--batch-size must be at least 1, got {args.batch_size}"
    if not args.input.is_file():
        return f"--input {args.input}: no such file" + (" (it is a folder)" if args.input.is_dir() else "")
    if args.output.is_dir():
        return f"--output {args.output} is a folder: give a file path, e.g. {args.output / 'scores.jsonl'}"
    if args.output.resolve() == args.input.resolve():
        return f"--output is the input file ({args.input}): give another path; the input is never written to"
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        probe = args.output.parent / f".{args.output.name}.write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        return f"--output: cannot write in {args.output.parent} ({err.strerror or err}); choose a writable folder"
    model = Path(args.model)
    if not model.exists():
        if model.is_absolute() or args.model.startswith(".") or len(model.parts) > 2:
            return f"--model {args.model}: no such folder; give notebook 03's RUN_DIR/rm_merged (or its copy)"
        return None  # a Hub id: from_pretrained reports access problems itself
    if not (model / "config.json").is_file():
        return f"--model {args.model}: not a merged reward model (no config.json); give notebook 03's rm_merged"
    architectures = json.loads((model / "config.json").read_text()).get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return (f"--model {args.model}: not a reward model (architectures {architectures}); give notebook 03's "
                "rm_merged, not a base or policy model")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.score", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a merged reward model directory (notebook 03)")
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quantization", choices=["8bit", "4bit"], default=None)
    args = parser.parse_args(argv)
    problem = check_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from .score import RewardScorer

    good, bad = read_rows(args.input)
    for line, reason in bad:
        print(f"{args.input}:{line}: skipped: {reason}", file=sys.stderr)
    done = _already_scored(args.output)
    todo = [(line, row) for line, row in good if line not in done]
    if todo:
        scorer = RewardScorer.from_pretrained(args.model, quantization=args.quantization)
        rewards = scorer.score_batch([(row["prompt"], row["response"]) for _, row in todo], args.batch_size,
                                     progress=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("a", encoding="utf-8") as out:
            for (line, row), reward in zip(todo, rewards, strict=True):
                out.write(json.dumps({"line": line, "id": row.get("id"), "reward": float(reward),
                                      "reward_normalized": (float(reward) - scorer.mean) / scorer.std}) + "\n")
    truncated = scorer.truncated if todo else 0
    print(f"read {len(good) + len(bad)} rows: scored {len(todo)}, already scored {len(good) - len(todo)}, "
          f"skipped {len(bad)} bad, truncated {truncated} -> {args.output}")
    return 0 if good else 1
