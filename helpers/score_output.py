"""The scoring CLI's output file: an exclusive lock, repair of a cut last line, the set of lines done, and the
fingerprint of what it was scored from.

The fingerprint is a sidecar, `<output>.fingerprint.json`, written (atomically) before the first row: the input's
size and the sha256 of its first MiB (and its path, for the message), the model, the quantization and the
max_length asked for. A rerun resumes only when they match, so rows scored from two inputs or two models never mix
in one file. The output itself stays one score row per line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path

HEAD_BYTES = 1 << 20  # the part of the input that is hashed: enough to tell two files apart, cheap on any size
SETTINGS = {"quantization": " (full precision)", "max_length": " (the model's limit)"}


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

    Raises:
        OutputBusy: another process holds the lock.
        ValueError: the file cannot be opened for writing, or a line is not a score row of this tool.
    """
    created = not path.exists()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ValueError(f"--output {path}: cannot open it for writing ({err.strerror or err}): make it writable "
                         f"(chmod u+w {path}) or give another path") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputBusy(f"another run is writing to {path}: wait for it to finish (a rerun then scores only what "
                         "is left), or give a different --output") from None
    out = os.fdopen(fd, "r+b")
    done, kept, report = LineSet(), 0, {"repaired": 0, "duplicates": 0, "created": created}
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


def fingerprint_path(output: Path) -> Path:
    return output.with_name(output.name + ".fingerprint.json")


def fingerprint(input_path: Path, model: str, quantization: str | None, max_length: int | None) -> dict:
    """What an output is scored from: the input (path, size, sha256 of its first MiB), the model (a local folder:
    its path and the sha256 of its config.json and reward_head.json, which hold the normalisation a retraining
    changes; a Hub id: the id) and the scoring settings."""
    with input_path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    folder, digest = Path(model), hashlib.sha256()
    if folder.is_dir():
        for name in ("config.json", "reward_head.json"):
            if (folder / name).is_file():
                digest.update(name.encode() + (folder / name).read_bytes())
    return {"input": {"path": str(input_path.resolve()), "size": input_path.stat().st_size,
                      "head_sha256": hashlib.sha256(head).hexdigest()},
            "model": ({"path": str(folder.resolve()), "sha256": digest.hexdigest()} if folder.is_dir()
                      else {"id": model}),
            "quantization": quantization, "max_length": max_length}


def _write_atomically(path: Path, text: str) -> None:
    """A temporary file in the same folder, synced, then renamed over `path`: a kill leaves the old or the new."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_fingerprint(output: Path, expected: dict, has_rows: bool) -> str | None:
    """Start an empty output (its fingerprint written), or check a non-empty one against `expected`.

    Returns:
        A note when the input or the model moved (the same content under another path), else None.

    Raises:
        ValueError: the output was scored from another input or with other settings, or has no fingerprint.
    """
    side = fingerprint_path(output)
    if not has_rows:
        _write_atomically(side, json.dumps(expected, indent=2, ensure_ascii=False) + "\n")
        return None
    try:
        stored = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{output} has score rows but {side} is missing, so which input and model they came from "
                         "is unknown (an older version of this tool, or another tool, wrote it). Give a new --output; "
                         "or delete both files to score again.") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"{side} cannot be read ({err}): give a new --output, or delete {output} and {side} to "
                         "score again.") from None
    if not (isinstance(stored, dict) and all(isinstance(stored.get(k), dict) for k in ("input", "model"))):
        raise ValueError(f"{side} is not a fingerprint written by this tool: give a new --output, or delete {output} "
                         f"and {side} to score again.")
    return _compare(output, stored, expected)


def _compare(output: Path, stored: dict, expected: dict) -> str | None:
    was, now = stored["input"], expected["input"]
    if (was.get("size"), was.get("head_sha256")) != (now["size"], now["head_sha256"]):
        raise ValueError(f"{output} holds the scores of another input: {was.get('path')} ({was.get('size')} bytes), "
                         f"not {now['path']} ({now['size']} bytes; the first MiB differs or the size does). Give a new "
                         f"--output for this input, or --input {was.get('path')} to finish that one.")
    model_was, model_now = stored["model"], expected["model"]
    if (model_was.get("id"), model_was.get("sha256")) != (model_now.get("id"), model_now.get("sha256")):
        name = model_was.get("id") or model_was.get("path")
        raise ValueError(f"{output} holds the scores of another model: {name}, not {_model_name(model_now)} (their "
                         "config.json or reward_head.json differ: retrained, or another model). Rerun with "
                         f"--model {name} to finish it, or give a new --output.")
    for key, meaning in SETTINGS.items():
        if stored.get(key) != expected[key]:
            was_set = f"{stored.get(key)}{meaning * (stored.get(key) is None)}"
            raise ValueError(f"{output} holds scores made with {key} {was_set}, not {expected[key]}: rerun with "
                             f"the same --{key.replace('_', '-')} to finish it, or give a new --output.")
    moved = [f"{what} {old.get('path')} -> {new.get('path')}" for what, old, new in
             (("input", was, now), ("model", model_was, model_now)) if old.get("path") != new.get("path")]
    return (f"{output}: resuming; same content under another path ({'; '.join(moved)}): taken as the same file, "
            "moved or copied (input: same size and first bytes; model: same config.json and reward_head.json)"
            if moved else None)


def _model_name(model: dict) -> str:
    return model.get("id") or model["path"]
