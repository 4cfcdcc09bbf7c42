"""`python -m helpers.score_cli`: score a JSONL file of (prompt, response) rows with a trained reward model.

    python -m helpers.score_cli --model runs/x/rm_merged --input in.jsonl --output out.jsonl [--batch-size 16]
                                [--max-length N] [--quantization 8bit|4bit]

Each input line is {"prompt": str | messages, "response": str | messages, ...}, a message being {"role": str,
"content": str}. Each output line is {"line": n, "id": ..., "reward": r, "reward_normalized": z,
"truncated_tokens": k}. An input longer than max_length tokens (--max-length; default: the model's
max_position_embeddings) keeps its BOS token and its last max_length - 1 tokens, so the reward is still read at the
final end-of-turn token, as in training; k is the number of tokens dropped, and the summary counts the rows this run
truncated. Bad lines are reported with their number and reason and skipped: not JSON, a missing or empty field, a
message without a string role or content, a lone surrogate escape (in the prompt, response or id), a row the chat
template or tokenizer fails on. Rows are written in the order they are scored (shortest first within each chunk of
batch-size x 64 rows, so batches pad little): match them to the input by `line` (or `id`), e.g.
`sorted(rows, key=lambda r: r["line"])`.

Built to lose nothing: the input is streamed (memory does not grow with the file) and every scored batch is
appended, flushed and synced before the next one starts, so a kill loses at most the batch in flight. A rerun
with the same arguments scores only the lines not in the output yet; a last line cut by a kill or a full disk is
removed and its row scored again, so any sequence of kills and reruns ends with exactly one output row per good
input line. OUTPUT.fingerprint.json, written before the first row, records what the output is scored from (the
input's size and first MiB, --model, --quantization, --max-length): a rerun from another input or with other
settings is refused rather than mixing rewards. A second run on the same output while one is writing is refused
(a lock on the output file, released by the system when the holder dies, even by SIGKILL). Every argument is
checked before the model loads: the input is readable; a local model folder has a readable config.json, one label
and safetensors weights; a Hub id is reachable, or in the local cache. Exit codes: 2 for a bad argument, a model
that does not load, a busy output or one scored from something else; 3 when reading the input or writing the
output failed mid-run (the rows written are kept; a rerun resumes); 1 when nothing could be scored; 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .score_checks import check_arguments, parse_line
from .score_output import LineSet, OutputBusy, check_fingerprint, fingerprint, fingerprint_path, open_output

__all__ = ["LineSet", "OutputBusy", "check_arguments", "main", "open_output", "parse_line"]
CHUNK_BATCHES = 64  # rows are read this many batches at a time and sorted by length inside the chunk


class RunError(Exception):
    """A failure after the arguments were accepted: its message, and the exit code it ends the run with."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def iter_lines(path: Path):
    """(line number, bytes) for every non-blank line, streamed; LF and CRLF endings."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield number, raw


def _append(out, records: list[dict]) -> None:
    """One write per batch, then flush and fsync: after a kill the file holds whole batches plus at most one cut
    line, which the next run removes."""
    out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
    out.flush()
    os.fsync(out.fileno())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.score_cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a merged reward model directory (notebook 03), or a Hub id")
    parser.add_argument("--input", required=True, type=Path, help="JSONL rows {prompt, response, id?}")
    parser.add_argument("--output", required=True, type=Path,
                        help="JSONL score rows; an existing one is resumed if scored from the same input and settings")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per input; longer ones keep BOS and their end, and are counted (default: the "
                        "model's max_position_embeddings)")
    parser.add_argument("--quantization", choices=["8bit", "4bit"], default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
            _start(args, out)
            counts = _score_file(args, out, done)
        except RunError as err:
            print(f"error: {err}", file=sys.stderr)
            if err.code == 2 and report["created"] and out.tell() == 0:  # nothing of ours to keep: leave no trace
                args.output.unlink(missing_ok=True)
                fingerprint_path(args.output).unlink(missing_ok=True)
            return err.code
    _print_summary(args, report, counts)
    return 0 if counts["good"] else 1


def _start(args, out) -> None:
    """Check the output's fingerprint against this run (or write it on an empty output); print a note if any."""
    try:
        expected = fingerprint(args.input, args.model, args.quantization, args.max_length)
    except OSError as err:
        raise RunError(f"--input {args.input}: cannot read it ({err.strerror or err})", 2) from err
    try:
        note = check_fingerprint(args.output, expected, has_rows=out.tell() > 0)
    except ValueError as err:
        raise RunError(str(err), 2) from err
    except OSError as err:
        raise RunError(f"writing {fingerprint_path(args.output)} failed ({err.strerror or err}): free space (or fix "
                       "the folder) and run the same command again", 3) from err
    if note:
        print(note, file=sys.stderr)


def _print_summary(args, report: dict, counts: dict) -> None:
    if report["repaired"]:
        print(f"{args.output}: removed a last line cut by an interrupted run; its row was scored again",
              file=sys.stderr)
    if report["duplicates"]:
        print(f"{args.output}: {report['duplicates']} lines repeat a line already there (written by an older "
              "version or another tool); left as they are", file=sys.stderr)
    rate = f" ({counts['scored'] / counts['seconds']:.1f} rows/s, model loading excluded)" if counts["scored"] else ""
    limit = f" (to {counts['max_length']} tokens)" if counts["max_length"] else ""
    print(f"read {counts['good'] + counts['bad']} rows: scored {counts['scored']}, already scored "
          f"{counts['good'] - counts['scored']}, skipped {counts['bad']} bad, truncated {counts['truncated']}{limit} "
          f"-> {args.output}{rate}")


def _load(args):
    """The reward scorer, its max_length defaulting to the model's max_position_embeddings."""
    from .env import KitError
    from .score import RewardScorer

    try:
        scorer = RewardScorer.from_pretrained(args.load_from, quantization=args.quantization,
                                              max_length=args.max_length)
    except (OSError, ValueError, ImportError, RuntimeError, KitError) as err:  # RuntimeError: e.g. size mismatch
        raise RunError(f"--model {args.model}: loading the model failed ({err})", 2) from err
    scorer.max_length = scorer.max_length or getattr(scorer.model.config, "max_position_embeddings", None)
    return scorer


def _tokenize(scorer, chunk: list, source: Path, counts: dict) -> list[tuple[int, dict, list[int], int]]:
    """(line, row, token ids truncated, tokens dropped) per row; a row the template or tokenizer fails on is
    reported and counted as bad."""
    from jinja2 import TemplateError

    from .score import truncate_ids

    kept = []
    for line, row in chunk:
        try:
            ids = scorer.tokens(row["prompt"], row["response"])
        except (TemplateError, TypeError, ValueError) as err:
            print(f"{source}:{line}: skipped: the chat template or tokenizer failed ({type(err).__name__}: "
                  f"{str(err)[:200]})", file=sys.stderr)
            counts["good"], counts["bad"] = counts["good"] - 1, counts["bad"] + 1
            continue
        cut = truncate_ids(ids, scorer.max_length, scorer.tokenizer.bos_token_id)
        kept.append((line, row, cut, len(ids) - len(cut)))
    return kept


def _score_chunk(args, scorer, chunk: list, out, counts: dict, bar) -> None:
    """Tokenize a chunk, score it shortest first, append each batch's rows as soon as they are scored."""
    rows = _tokenize(scorer, chunk, args.input, counts)
    for positions, rewards in scorer.iter_id_batches([ids for _, _, ids, _ in rows], args.batch_size):
        records = []
        for i, reward in sorted(zip(positions, rewards, strict=True)):
            line, row, _, dropped = rows[i]
            records.append({"line": line, "id": row.get("id"), "reward": float(reward),
                            "reward_normalized": (float(reward) - scorer.mean) / scorer.std,
                            "truncated_tokens": dropped})
        try:
            _append(out, records)
        except OSError as err:  # a full disk, a vanished mount: what was written stays, a rerun resumes
            raise RunError(f"writing {args.output} failed ({err.strerror or err}); the rows written so far are "
                           "kept. Free space (or fix the folder) and run the same command again: it scores only "
                           "what is left.", 3) from err
        counts["scored"] += len(records)
        counts["truncated"] += sum(1 for r in records if r["truncated_tokens"])
        bar.update(len(records))


def _score_file(args, out, done: LineSet) -> dict:
    """Stream the input, score what is not done chunk by chunk (the model loads at the first chunk to score)."""
    import time

    from tqdm.auto import tqdm

    scorer, chunk, last = None, [], 0
    counts = {"good": 0, "bad": 0, "scored": 0, "truncated": 0, "seconds": 0.0, "max_length": None}

    def flush():
        nonlocal scorer
        scorer = scorer or _load(args)
        counts["max_length"] = scorer.max_length
        start = time.perf_counter()  # scoring time, model loading excluded
        _score_chunk(args, scorer, chunk, out, counts, bar)
        chunk.clear()
        counts["seconds"] += time.perf_counter() - start

    with tqdm(desc="scoring", unit="row", disable=None) as bar:
        try:
            for last, raw in iter_lines(args.input):
                row, reason = parse_line(raw)
                if reason:
                    counts["bad"] += 1
                    print(f"{args.input}:{last}: skipped: {reason}", file=sys.stderr)
                    continue
                counts["good"] += 1
                if last not in done:
                    chunk.append((last, row))
                if len(chunk) >= args.batch_size * CHUNK_BATCHES:
                    flush()
        except OSError as err:  # flush() raises RunError, never OSError: this is the input failing
            raise RunError(f"reading {args.input} failed after line {last} ({err.strerror or err}); the rows written "
                           "so far are kept. Fix the file or its disk and run the same command again: it scores only "
                           "what is left.", 3) from err
        if chunk:
            flush()
    return counts


if __name__ == "__main__":
    sys.exit(main())
