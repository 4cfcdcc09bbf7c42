"""`python -m helpers.score_cli`: score a JSONL file of (prompt, response) rows with a trained reward model.

    python -m helpers.score_cli --model runs/x/rm_merged --input in.jsonl --output out.jsonl [--batch-size 16]

Each input line is {"prompt": str | messages, "response": str | messages, ...}. Each output line is
{"line": n, "id": ..., "reward": r, "reward_normalized": z}; inputs longer than the model's max_length are
truncated and counted. Bad lines are reported with their number and reason and skipped. Rows are written in
the order they are scored (shortest first within each chunk of batch-size x 64 rows, so batches pad little):
match them to the input by `line` (or `id`), e.g. `sorted(rows, key=lambda r: r["line"])`.

Built to lose nothing: the input is streamed (memory does not grow with the file) and every scored batch is
appended, flushed and synced before the next one starts, so a kill loses at most the batch in flight. A rerun
with the same arguments scores only the lines not in the output yet; a last line cut by a kill or a full disk is
removed and its row scored again, so any sequence of kills and reruns ends with exactly one output row per good
input line. A second run on the same output while one is writing is refused (a lock on the output file, released
by the system when the holder dies, even by SIGKILL). Every argument is checked before the model loads. The exit
code is 2 for a bad argument or a busy output, 3 when writing failed (a rerun resumes), 1 when nothing could be
scored, 0 otherwise.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from pathlib import Path

CHUNK_BATCHES = 64  # rows are read this many batches at a time and sorted by length inside the chunk


def _check(row) -> str | None:
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


def parse_line(raw: bytes) -> tuple[dict | None, str | None]:
    """(row, None) for a good input line, (None, reason) for a bad one."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        return None, f"undecodable bytes ({err.reason})"
    except json.JSONDecodeError as err:
        return None, f"malformed JSON ({err.msg})"
    reason = _check(row)
    return (None, reason) if reason else (row, None)


def iter_lines(path: Path):
    """(line number, bytes) for every non-blank line, streamed; LF and CRLF endings."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield number, raw


class LineSet:
    """Input line numbers already in the output, one bit each (a 200k-line file: 25 kB)."""

    def __init__(self):
        self.bits = bytearray()

    def add(self, n: int) -> bool:
        """Mark line n; False when it was marked already."""
        byte, bit = divmod(n, 8)
        if byte >= len(self.bits):
            self.bits.extend(bytes(byte + 1 - len(self.bits)))
        seen = self.bits[byte] >> bit & 1
        self.bits[byte] |= 1 << bit
        return not seen

    def __contains__(self, n: int) -> bool:
        byte, bit = divmod(n, 8)
        return byte < len(self.bits) and bool(self.bits[byte] >> bit & 1)


class OutputBusy(Exception):
    pass


def open_output(path: Path):
    """Open the output for appending under an exclusive lock; repair a cut last line; return (file, done, report).

    The lock (flock) is held until the process ends; the system drops it when the process dies, SIGKILL included.
    A final line without its newline is a write cut short (kill, full disk): it is removed and its row rescored.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputBusy(f"another run is writing to {path}: wait for it to finish (a rerun then scores only what "
                         "is left), or give a different --output") from None
    out = os.fdopen(fd, "r+b")
    done, kept, report = LineSet(), 0, {"repaired": 0, "duplicates": 0}
    for number, raw in enumerate(out, start=1):
        if not raw.endswith(b"\n"):
            out.truncate(kept)
            report["repaired"] = 1
            break
        try:
            line = int(json.loads(raw)["line"])
        except (ValueError, KeyError, TypeError) as err:
            out.close()
            raise ValueError(f"{path}:{number} is not a score row of this tool ({err!r}): is --output another "
                             "file? Give a new path, or remove that line.") from None
        if not done.add(line):
            report["duplicates"] += 1
        kept += len(raw)
    out.seek(0, os.SEEK_END)
    return out, done, report


def _append(out, records: list[dict]) -> None:
    """One write per batch, then flush and fsync: after a kill the file holds whole batches plus at most one cut
    line, which the next run removes."""
    out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
    out.flush()
    os.fsync(out.fileno())


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
    from .env import KitError, require_safetensors

    try:
        require_safetensors(model, "reward model")
    except KitError as err:
        return f"--model {err}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.score_cli", description=__doc__.split("\n")[0])
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
    try:
        out, done, report = open_output(args.output)
    except (OutputBusy, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with out:
        try:
            counts = _score_file(args, out, done)
        except OSError as err:  # a full disk, a vanished mount: what was written stays, a rerun resumes
            print(f"error: writing {args.output} failed ({err.strerror or err}); the rows written so far are kept. "
                  "Free space (or fix the folder) and run the same command again: it scores only what is left.",
                  file=sys.stderr)
            return 3
    if report["repaired"]:
        print(f"{args.output}: removed a last line cut by an interrupted run; its row was scored again",
              file=sys.stderr)
    if report["duplicates"]:
        print(f"{args.output}: {report['duplicates']} lines repeat a line already there (written by an older "
              "version or another tool); left as they are", file=sys.stderr)
    rate = f" ({counts['scored'] / counts['seconds']:.1f} rows/s, model loading excluded)" if counts["scored"] else ""
    print(f"read {counts['good'] + counts['bad']} rows: scored {counts['scored']}, already scored "
          f"{counts['good'] - counts['scored']}, skipped {counts['bad']} bad, truncated {counts['truncated']} "
          f"-> {args.output}{rate}")
    return 0 if counts["good"] else 1


def _score_file(args, out, done: LineSet) -> dict:
    """Stream the input, score what is not done chunk by chunk, append each batch as it finishes."""
    import time

    from tqdm.auto import tqdm

    scorer, counts, chunk = None, {"good": 0, "bad": 0, "scored": 0, "truncated": 0, "seconds": 0.0}, []
    chunk_rows = args.batch_size * CHUNK_BATCHES

    def flush():
        nonlocal scorer
        if scorer is None:
            from .score import RewardScorer

            scorer = RewardScorer.from_pretrained(args.model, quantization=args.quantization)
        start = time.perf_counter()  # scoring time, model loading excluded
        items = [(row["prompt"], row["response"]) for _, row in chunk]
        for positions, rewards in scorer.iter_batches(items, args.batch_size):
            records = []
            for i, reward in sorted(zip(positions, rewards, strict=True)):
                line, row = chunk[i]
                records.append({"line": line, "id": row.get("id"), "reward": float(reward),
                                "reward_normalized": (float(reward) - scorer.mean) / scorer.std})
            _append(out, records)
            counts["scored"] += len(records)
            bar.update(len(records))
        chunk.clear()
        counts["seconds"] += time.perf_counter() - start

    with tqdm(desc="scoring", unit="row", disable=None) as bar:
        for line, raw in iter_lines(args.input):
            row, reason = parse_line(raw)
            if reason:
                counts["bad"] += 1
                print(f"{args.input}:{line}: skipped: {reason}", file=sys.stderr)
                continue
            counts["good"] += 1
            if line not in done:
                chunk.append((line, row))
            if len(chunk) >= chunk_rows:
                flush()
        if chunk:
            flush()
    counts["truncated"] = scorer.truncated if scorer else 0
    return counts


if __name__ == "__main__":
    sys.exit(main())
