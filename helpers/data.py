"""Load preference pairs and unpaired rows from common layouts, check every row, lose nothing silently.

Accepted row layouts (detected per row) for `load_preferences`:
* plain: `prompt`, `chosen`, `rejected` strings;
* conversational: `prompt` a message list (or string), `chosen`/`rejected` one assistant message each;
  or, with no prompt, `chosen`/`rejected` full conversations that share every turn but the last;
* Axolotl: `context`, `input` or `question` as the prompt, optional `system`, optional numeric `rating`;
* hh-rlhf: `chosen`/`rejected` dialogues "\\n\\nHuman: ...\\n\\nAssistant: ..."; the prompt is the
  shared turns before the last "Assistant:".
`load_unpaired` takes `prompt`, `completion` and `label` (bool, "true"/"false" or 1/0).

Rows come out in TRL's conversational explicit-prompt format, contents stripped of surrounding
whitespace. Every dropped row gets a reason code and a message naming file, line (or record) and field.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections import Counter
from pathlib import Path

from .env import KitError

ROLES = ("system", "user", "assistant")
PROMPT_KEYS = ("prompt", "context", "input", "question")
META_KEYS = ("id", "category", "language", "failure_mode", "length_balanced", "split", "rating", "source")
ON_ERROR = ("report", "raise")
HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
FILE_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by errors="surrogateescape"
FIXES = {
    "malformed_json": "make the line one complete JSON object (check quotes, commas and brackets).",
    "undecodable_bytes": "save the file as UTF-8.",
    "missing_field": "add the field (the prompt may also be called context, input or question).",
    "wrong_type": "use a string, or a list of {'role', 'content'} messages.",
    "empty_text": "write the text, or delete the row.",
    "identical_pair": "a pair needs two different answers: fix the rejected answer or delete the row.",
    "duplicate_pair": "delete the repeated row.",
    "duplicate_row": "delete the repeated row.",
    "bad_role": "use the roles 'system', 'user' and 'assistant'.",
    "bad_structure": "prompt: optional system message, then user/assistant turns ending on user; "
                     "each answer: one assistant message.",
    "bad_label": "use true/false (or 1/0) for label.",
    "unknown_format": "use one of the layouts listed in help(helpers.data).",
}


class DataError(KitError, ValueError):
    """A row or file that cannot be used; the message names the file, line (or record), field and the fix."""


class RowError(Exception):
    """One bad row, before the file and line are known: a reason code, the field and what is wrong."""

    def __init__(self, reason: str, field: str, message: str):
        super().__init__(message)
        self.reason, self.field = reason, field


def require_inputs(paths, notebook: str) -> list[Path]:
    """Check that a notebook's inputs exist; stop at once with the notebook to run first if not.

    Raises:
        KitError: names every missing path and `notebooks/<notebook>.ipynb`.
    """
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise KitError(f"Missing input(s): {', '.join(missing)}. Run notebooks/{notebook}.ipynb first "
                       "with the same PROFILE and RUN_DIR, then run this notebook again.")
    return paths


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise RowError("wrong_type", field, f"expected a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise RowError("empty_text", field, "the text is empty")
    return text


def _messages(value, field: str) -> list[dict]:
    if not isinstance(value, list):
        raise RowError("wrong_type", field, f"expected a list of messages, got {type(value).__name__}")
    if not value:
        raise RowError("bad_structure", field, "the message list is empty")
    out = []
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(msg, dict) or "role" not in msg:
            raise RowError("bad_structure", where, "a message must be an object with 'role' and 'content'")
        if msg["role"] not in ROLES:
            raise RowError("bad_role", f"{where}.role", f"unknown role {msg['role']!r}")
        if msg.get("content") is None:
            raise RowError("bad_structure", where, "the message has no 'content'")
        out.append({"role": msg["role"], "content": _text(msg["content"], f"{where}.content")})
    return out


def _check_prompt(msgs: list[dict], field: str) -> list[dict]:
    start = 1 if msgs and msgs[0]["role"] == "system" else 0
    for i, msg in enumerate(msgs[start:], start):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if msg["role"] != expected:
            raise RowError("bad_structure", f"{field}[{i}].role",
                           f"turn {i} is {msg['role']!r} where {expected!r} was expected")
    if len(msgs) == start or msgs[-1]["role"] != "user":
        raise RowError("bad_structure", field, "the prompt must end on a user turn")
    return msgs


def _prompt(value, field: str, system=None) -> list[dict]:
    if isinstance(value, str):
        msgs = [{"role": "user", "content": _text(value, field)}]
    else:
        msgs = _messages(value, field)
    if system is not None:
        if msgs[0]["role"] == "system":
            raise RowError("bad_structure", "system", "a system field and a system message in the prompt")
        msgs.insert(0, {"role": "system", "content": _text(system, "system")})
    return _check_prompt(msgs, field)


def _answer(value, field: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": _text(value, field)}]
    msgs = _messages(value, field)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise RowError("bad_structure", field, f"expected one assistant message, got roles "
                       f"{[m['role'] for m in msgs]}")
    return msgs


def _split_conversation(chosen, rejected, field="chosen") -> tuple[list, list, list]:
    """Full conversations sharing the prompt turns -> (prompt, chosen answer, rejected answer)."""
    if chosen[:-1] != rejected[:-1]:
        raise RowError("bad_structure", "rejected", "chosen and rejected must share every turn but the last")
    answers = _answer(chosen[-1:], "chosen"), _answer(rejected[-1:], "rejected")
    return _check_prompt(chosen[:-1], field), *answers


def _hh_dialogue(text: str, field: str) -> list[dict]:
    parts = HH_TURN.split(text)
    if parts[0].strip():
        raise RowError("bad_structure", field, "text before the first 'Human:'")
    return [{"role": "user" if role == "Human" else "assistant", "content": _text(content, field)}
            for role, content in zip(parts[1::2], parts[2::2], strict=False)]


def _is_hh(text: str) -> bool:
    return text.lstrip().startswith("Human:")


def _missing(row: dict, needed: tuple[str, ...], other: str) -> RowError:
    absent = next((k for k in needed if row.get(k) is None), needed[0])
    if any(k in row for k in needed) or any(k in row for k in PROMPT_KEYS):
        return RowError("missing_field", absent, f"the field {absent!r} is missing")
    if all(k in row for k in ("chosen", "rejected")) or "completion" in row:
        return RowError("unknown_format", "(row)", f"this looks like {other}")
    return RowError("unknown_format", "(row)", f"no known layout matches the keys {sorted(row)}")


def _pair(row: dict) -> tuple[str, list, list, list]:
    """One raw row -> (layout name, prompt, chosen, rejected) in TRL's conversational format."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if chosen is None or rejected is None:
        raise _missing(row, ("chosen", "rejected"), "an unpaired row: use load_unpaired")
    key = next((k for k in PROMPT_KEYS if row.get(k) is not None), None)
    system = row.get("system")
    if isinstance(chosen, str) and isinstance(rejected, str):
        if key is None and _is_hh(chosen):
            turns = _hh_dialogue(chosen, "chosen"), _hh_dialogue(rejected, "rejected")
            return "hh_rlhf", *_split_conversation(*turns)
        if key is None:
            raise RowError("missing_field", "prompt", "the field 'prompt' is missing")
        layout = "plain" if key == "prompt" and system is None else "axolotl"
        answers = _answer(chosen, "chosen"), _answer(rejected, "rejected")
        return layout, _prompt(row[key], key, system), *answers
    if isinstance(chosen, list) and isinstance(rejected, list):
        if key is None:
            turns = _messages(chosen, "chosen"), _messages(rejected, "rejected")
            return "conversational_implicit", *_split_conversation(*turns)
        answers = _answer(chosen, "chosen"), _answer(rejected, "rejected")
        return "conversational", _prompt(row[key], key, system), *answers
    bad = "chosen" if not isinstance(chosen, (str, list)) else "rejected"
    raise RowError("wrong_type", bad, f"chosen and rejected must both be strings or both message lists, got "
                   f"{type(chosen).__name__} and {type(rejected).__name__}")


def parse_label(value, field: str = "label") -> bool:
    """true/false, "true"/"false", 1/0 or "1"/"0" -> bool; anything else raises RowError("bad_label")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise RowError("bad_label", field, f"expected true/false (or 1/0), got {value!r}")


def _unpaired(row: dict) -> tuple[str, list, list, bool]:
    """One raw row -> (layout name, prompt, completion, label)."""
    if "chosen" in row and "rejected" in row:
        raise RowError("unknown_format", "(row)", "this is a preference pair: use load_preferences "
                       "(and helpers.kto.unpair_preferences to unpair it)")
    completion, key = row.get("completion"), next((k for k in PROMPT_KEYS if row.get(k) is not None), None)
    if completion is None or row.get("label") is None:
        raise _missing(row, ("completion", "label"), "a preference pair: use load_preferences")
    label = parse_label(row["label"])
    if key is None and isinstance(completion, list):
        msgs = _messages(completion, "completion")
        prompt, answer = _check_prompt(msgs[:-1], "completion"), _answer(msgs[-1:], "completion")
        return "conversational_implicit", prompt, answer, label
    if key is None:
        raise RowError("missing_field", "prompt", "the field 'prompt' is missing")
    layout = "conversational" if isinstance(completion, list) or isinstance(row[key], list) else "plain"
    return layout, _prompt(row[key], key, row.get("system")), _answer(completion, "completion"), label


def _meta(row: dict) -> dict:
    meta = {}
    for key in META_KEYS:
        value = row.get(key)
        if value is None or value == "":
            continue
        if key == "length_balanced":
            value = parse_label(value, key)
        elif key == "rating":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise RowError("wrong_type", key, f"expected a number, got {value!r}") from None
        elif key == "id" and isinstance(value, int):
            value = str(value)
        elif not isinstance(value, str):
            raise RowError("wrong_type", key, f"expected a string, got {type(value).__name__}")
        meta[key] = value
    return meta


def _flat(messages: list[dict]) -> str:
    return " ".join(messages[0]["content"].split())


def _normalise(row: dict, kind: str, seen: dict, where: str) -> tuple[str, dict]:
    if kind == "pairs":
        layout, prompt, chosen, rejected = _pair(row)
        if _flat(chosen) == _flat(rejected):
            raise RowError("identical_pair", "rejected", "chosen and rejected are the same text")
        out, reason = {"prompt": prompt, "chosen": chosen, "rejected": rejected}, "duplicate_pair"
        key = (tuple((m["role"], m["content"]) for m in prompt), chosen[0]["content"], rejected[0]["content"])
    else:
        layout, prompt, answer, label = _unpaired(row)
        out, reason = {"prompt": prompt, "completion": answer, "label": label}, "duplicate_row"
        key = (tuple((m["role"], m["content"]) for m in prompt), answer[0]["content"])
    if key in seen:
        raise RowError(reason, "(row)", f"same prompt and answers as {seen[key]}")
    out.update(_meta(row))
    seen[key] = where
    return layout, out


def _to_dataset(rows: list[dict], kind: str):
    from datasets import Dataset

    first = ["prompt", "chosen", "rejected"] if kind == "pairs" else ["prompt", "completion", "label"]
    present = {k for row in rows for k in row}
    columns = first + [k for k in META_KEYS if k in present] + ["source_line"]
    return Dataset.from_dict({c: [row.get(c) for row in rows] for c in columns})


# ---- reading: every reader yields (unit, line, record or RowError, raw) so one bad line never stops a file


def _jsonl_rows(data: bytes):
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield "line", n, RowError("undecodable_bytes", "(line)", f"byte {err.start + 1} of the line is "
                                      "not UTF-8"), raw.decode("utf-8", "replace")
            continue
        try:
            yield "line", n, json.loads(text), text
        except json.JSONDecodeError as err:
            yield "line", n, RowError("malformed_json", "(line)", f"invalid JSON at column {err.colno} "
                                      f"({err.msg})"), text


def _json_rows(data: bytes, name: str):
    if not data.lstrip().startswith(b"["):  # JSON lines saved as .json (datasets' to_json does this)
        return "jsonl", _jsonl_rows(data)
    try:
        records = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        line = data[: err.start].count(b"\n") + 1 if isinstance(err, UnicodeDecodeError) else err.lineno
        raise DataError(f"{name}, line {line}: the JSON array cannot be read ({err}), so no row can be. "
                        "Fix: repair the file, or save it as JSON lines (one object per line).") from None
    return "json", (("record", i, row, row) for i, row in enumerate(records))


def _csv_cell(cell: str):
    if not cell:
        return None  # an empty cell is an absent value
    if cell[0] == "[" and cell.rstrip()[-1] == "]":  # a JSON message list written into a cell
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            return cell
    return cell


def _csv_rows(data: bytes, name: str):
    lines = list(io.StringIO(data.decode("utf-8", "surrogateescape"), newline=""))
    reader = csv.reader(lines)
    header, prev = next(reader, []), 1
    try:
        for cells in reader:
            start, prev = prev + 1, reader.line_num
            raw = "".join(lines[start - 1: prev]).rstrip("\r\n")
            if not any(c.strip() for c in cells):
                continue
            if SURROGATE.search(raw):
                yield "line", start, RowError("undecodable_bytes", "(line)", "bytes that are not UTF-8"), \
                    raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            elif len(cells) != len(header):
                yield "line", start, RowError("bad_structure", "(row)", f"{len(cells)} cells, the header has "
                                              f"{len(header)}"), raw
            else:
                yield "line", start, {h: _csv_cell(c) for h, c in zip(header, cells, strict=True)}, raw
    except csv.Error as err:
        raise DataError(f"{name}, line {reader.line_num}: the CSV cannot be parsed further ({err}). "
                        "Fix: check the quoting on that line.") from None


def _dataset_rows(dataset):
    return (("record", i, row, row) for i, row in enumerate(dataset))


def _read_records(source, split):
    """-> (name, format, rows) for a file path, a `datasets.Dataset` or a hub dataset name."""
    from datasets import Dataset

    if isinstance(source, Dataset):
        return "Dataset", "dataset", _dataset_rows(source)
    path, supported = Path(source), ".jsonl, .json, .csv, .parquet, a datasets.Dataset or a hub dataset name"
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt and path.is_file():
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not data
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return str(path), fmt, _dataset_rows(pq.read_table(path).to_pylist())
        if fmt == "json":
            return str(path), *_json_rows(data, str(path))
        return str(path), fmt, _jsonl_rows(data) if fmt == "jsonl" else _csv_rows(data, str(path))
    if fmt or path.exists() or not HUB_ID.match(str(source)):
        what = "no such file" if not path.exists() else f"unsupported file type {path.suffix!r}"
        raise DataError(f"{source}: {what}. Give one of: {supported}.")
    from datasets import load_dataset

    try:
        dataset = load_dataset(str(source), split=split or "train")
    except Exception as err:  # noqa: BLE001 - network, auth and missing-split errors come from several libraries
        raise DataError(f"{source}: cannot load it from the Hugging Face Hub ({type(err).__name__}: {err}). "
                        f"Offline, or a typo? Give a local file instead: {supported}.") from err
    return f"hub:{source}", "hub", _dataset_rows(dataset)


def _load(source, kind: str, on_error: str, rejected_path, split):
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    name, fmt, records = _read_records(source, split)
    kept, dropped, layouts, seen, other_split = [], [], Counter(), {}, 0
    for unit, line, record, raw in records:
        try:
            if isinstance(record, RowError):
                raise record
            if not isinstance(record, dict):
                raise RowError("wrong_type", "(row)", f"expected a JSON object, got {type(record).__name__}")
            layout, row = _normalise(record, kind, seen, f"{unit} {line}")
        except RowError as err:
            message = f"{name}, {unit} {line}, field '{err.field}': {err}. Fix: {FIXES[err.reason]}"
            if on_error == "raise":
                raise DataError(message) from None
            dropped.append({"file": name, "line": line, "unit": unit, "field": err.field,
                            "reason": err.reason, "message": message, "raw": raw})
            continue
        if split is not None and fmt != "hub" and row.get("split") != split:
            other_split += 1
            continue
        layouts[layout] += 1
        kept.append({**row, "source_line": line})
    report = {"file": name, "format": fmt, "kind": kind, "read": len(kept) + len(dropped), "kept": len(kept),
              "dropped": len(dropped), "dropped_by_reason": dict(Counter(d["reason"] for d in dropped)),
              "row_formats": dict(layouts), "first_errors": [d["message"] for d in dropped[:5]]}
    if split is not None:
        report.update(split=split, other_split=other_split)
    if rejected_path is not None:
        write_jsonl(dropped, rejected_path)
        report["rejected_path"] = str(rejected_path)
    return _to_dataset(kept, kind), report


def load_preferences(source, on_error: str = "report", rejected_path=None, split: str | None = None):
    """Load preference pairs from a file, a `datasets.Dataset` or a hub dataset, and check every row.

    Args:
        source: a .jsonl / .json (array) / .csv / .parquet path, a `datasets.Dataset`, or a hub dataset name
            (only then is `datasets.load_dataset` called).
        on_error: "report" keeps the good rows and reports the rest; "raise" stops at the first bad row.
        rejected_path: in report mode, write every dropped row here as JSONL
            {file, line, unit, field, reason, message, raw}.
        split: keep only rows whose `split` column equals it (for a hub dataset: the split to load).

    Returns:
        (dataset, report): the kept rows as a `Dataset` (prompt, chosen, rejected in TRL's conversational
        format, the metadata columns found, `source_line`), and a report dict: file, format, read, kept,
        dropped, dropped_by_reason, row_formats, first_errors. Always kept + dropped == read.

    Raises:
        DataError: a bad row in "raise" mode, or a file that cannot be read at all.
        ValueError: `on_error` is not "report" or "raise".
    """
    return _load(source, "pairs", on_error, rejected_path, split)


def load_unpaired(source, on_error: str = "report", rejected_path=None, split: str | None = None):
    """Load unpaired (prompt, completion, label) rows, as `load_preferences` loads pairs.

    Returns:
        (dataset, report): prompt, completion (one assistant message), label (bool), metadata, source_line.
    """
    return _load(source, "unpaired", on_error, rejected_path, split)


def split_dataset(dataset, test_size: float = 0.2, seed: int = 0) -> dict:
    """{"train": ..., "test": ...}: by the `split` column when every row has train/test, else by prompt.

    Splitting by prompt (shuffled with `seed`) keeps every prompt on one side, so test prompts stay unseen.
    The returned datasets carry a `split` column either way.
    """
    splits = list(dataset["split"]) if "split" in dataset.column_names else []
    if not splits or not set(splits) <= {"train", "test"}:
        keys = [json.dumps(p, ensure_ascii=False, sort_keys=True) for p in dataset["prompt"]]
        prompts = sorted(set(keys))
        random.Random(seed).shuffle(prompts)
        held_out = set(prompts[: round(test_size * len(prompts))])
        splits = ["test" if k in held_out else "train" for k in keys]
        if "split" in dataset.column_names:
            dataset = dataset.remove_columns("split")
        dataset = dataset.add_column("split", splits)
    return {name: dataset.select([i for i, s in enumerate(splits) if s == name])
            for name in ("train", "test")}


def write_jsonl(rows, path) -> Path:
    """Write rows (a `Dataset` or a list of dicts) as UTF-8 JSON lines (folders created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return path
