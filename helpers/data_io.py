"""Read preference files record by record, so that one bad line never stops a file (used by helpers.data).

Every reader yields `(unit, number, record or RowError, raw)`: unit is "line" (JSON lines, CSV: the file's line
number, 1-based) or "record" (a JSON array, a Parquet file, a dataset: the 0-based index). A file that cannot be
read at all (unreadable, a corrupt gzip, not Parquet) raises `DataError` once, naming the file and the fix. JSON
objects whose keys repeat, CSV rows under a header that names a column twice, integers too long for Python and
nesting too deep for its parser become rows `helpers.data` can drop with the field named.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import gzip
import io
import json
import re
import zlib
from pathlib import Path

from .env import KitError

FILE_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SUPPORTED = (".jsonl, .json, .csv, .parquet (each also gzipped, .gz), a folder of such files, "
             "a datasets.Dataset or a Hub dataset name")
GZIP_MAGIC = b"\x1f\x8b"
# keys that make a JSON object a row rather than a wrapper around rows
ROW_KEYS = {"prompt", "context", "input", "question", "chosen", "rejected", "completion", "label", "history",
            "response_0", "response_1", "human_ref_A", "human_ref_B"}
MAX_INT_DIGITS = 4000  # Python refuses int() of more than 4300 digits; longer ones become float (inf)
csv.field_size_limit(2**31 - 1)  # the default (131,072 characters) would stop a file at its first long answer


class DataError(KitError, ValueError):
    """A row or file that cannot be used; the message names the file, line (or record), field and the fix."""


class RowError(Exception):
    """One bad row, before the file and line are known: a reason code, the field and what is wrong."""

    def __init__(self, reason: str, field: str, message: str, fix: str | None = None):
        super().__init__(message)
        self.reason, self.field, self.fix = reason, field, fix


class DuplicateKeys(dict):
    """A JSON object in which a key appears twice; `duplicate` is that key (json keeps only the last value)."""

    duplicate = ""


def _object(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set = set()
    obj = DuplicateKeys(obj)
    obj.duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


class LongInteger(float):
    """An integer too long for int() (its value: inf); `digits` says how long, for the message."""

    digits = 0


def _int(digits: str):
    if len(digits) <= MAX_INT_DIGITS:
        return int(digits)
    number = LongInteger(digits)
    number.digits = len(digits.lstrip("-"))
    return number


def kind(value) -> str:
    """A value's type in words, for messages: "str", "list", "a 5000-digit integer"."""
    return f"a {value.digits}-digit integer" if isinstance(value, LongInteger) else type(value).__name__


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_int=_int)  # built once: json.loads(**kw) builds one a call


def loads(text: str):
    """json.loads that marks duplicate keys and never fails on a long integer (it becomes inf)."""
    return _DECODER.decode(text)


def _json_error(err: Exception) -> RowError:
    if isinstance(err, RecursionError):
        return RowError("malformed_json", "(line)", "the JSON is nested too deeply to read (about 1000 levels)")
    return RowError("malformed_json", "(line)", f"invalid JSON at column {err.colno} ({err.msg})")


def _parse_line(raw: bytes, n: int):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return "line", n, RowError("undecodable_bytes", "(line)", f"byte {err.start + 1} of the line is not "
                                   "UTF-8"), raw.decode("utf-8", "replace")
    try:
        return "line", n, loads(text), text
    except (json.JSONDecodeError, RecursionError) as err:
        return "line", n, _json_error(err), text


def jsonl_rows(data: bytes):
    """JSON lines; lines end in LF, CRLF or a lone CR (old Mac files), blank lines are skipped."""
    for n, raw in enumerate(data.splitlines(), 1):
        if raw.strip():
            yield _parse_line(raw, n)


def _records(items, note: str):
    return note, (("record", i, row, row) for i, row in enumerate(items))


def _columns_to_rows(doc: dict, name: str) -> list[dict]:
    lengths = {k: len(v) for k, v in doc.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{name}: a column-oriented JSON object whose columns have different lengths "
                        f"({lengths}), so rows cannot be formed. Fix: give every column one value per row, or "
                        "save the data as JSON lines (one object per line).")
    return [dict(zip(doc, values, strict=True)) for values in zip(*doc.values(), strict=True)]


def _is_message_list(value) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


def _document_rows(doc, name: str):
    """One JSON value holding the whole file -> (note, records); refuse once what is not rows."""
    if isinstance(doc, list):
        return _records(doc, "")
    if not isinstance(doc, dict):
        raise DataError(f"{name}: the file holds one JSON {type(doc).__name__}, not rows. Fix: save one JSON "
                        "object per line, or a JSON array of objects.")
    lists = [k for k, v in doc.items() if isinstance(v, list)]
    row_lists = [k for k in lists if doc[k] and all(isinstance(r, dict) for r in doc[k])
                 and not _is_message_list(doc[k])]
    if ROW_KEYS & set(doc) and len(lists) == len(doc) and not row_lists \
            and not any(_is_message_list(v) for v in doc.values()):
        rows = _columns_to_rows(doc, name)
        return _records(rows, f"column-oriented JSON object ({', '.join(doc)}): read as {len(rows)} rows")
    if ROW_KEYS & set(doc) or isinstance(doc, DuplicateKeys):
        return _records([doc], "the file holds one JSON object: read as one row")
    wrappers = row_lists
    if len(wrappers) == 1:
        key = wrappers[0]
        return _records(doc[key], f"rows read from the {key!r} field of the JSON object "
                                  f"(other fields ignored: {[k for k in doc if k != key]})")
    raise DataError(f"{name}: one JSON object with the keys {sorted(doc)[:10]}, which is neither a row nor a "
                    f"list of rows{' (several lists: ' + ', '.join(wrappers) + ')' if wrappers else ''}. Fix: save "
                    "the rows you want as JSON lines (one object per line), or as a JSON array of objects.")


def json_rows(data: bytes, name: str):
    """A .json file: an array of rows, one object (a row, rows wrapped in a field, or columns), or JSON lines.

    Returns:
        (format, note, records).
    """
    head = data.lstrip()[:1]
    if head == b"{":  # JSON lines saved as .json (datasets' to_json does this), or one object over many lines
        first = next((line for line in data.splitlines() if line.strip()), b"")
        one_line = b"\n" not in data.strip() and b"\r" not in data.strip()
        if not one_line and not isinstance(_parse_line(first, 1)[2], RowError):
            return "jsonl", "", jsonl_rows(data)
    if head not in (b"[", b"{"):
        return "jsonl", "", jsonl_rows(data)
    try:
        doc = loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        if head == b"{":  # not one object: read it line by line, each bad line reported
            return "jsonl", "", jsonl_rows(data)
        line = (data[: err.start].count(b"\n") + 1 if isinstance(err, UnicodeDecodeError)
                else getattr(err, "lineno", "?"))
        raise DataError(f"{name}, line {line}: the JSON array cannot be read ({err}), so no row can be. "
                        "Fix: repair the file, or save it as JSON lines (one object per line).") from None
    return ("json", *_document_rows(doc, name))


def _csv_cell(cell: str):
    if not cell:
        return None  # an empty cell is an absent value
    if cell[0] == "[" and cell.rstrip()[-1] == "]":  # a JSON message list written into a cell
        try:
            return loads(cell)
        except (json.JSONDecodeError, RecursionError):
            return cell
    return cell


NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by errors="surrogateescape"


def _repeated_column(header: list[str]) -> RowError | None:
    """A header naming one column twice: csv.DictReader (and pandas' 'x.1') would keep or rename one silently."""
    first: dict[str, int] = {}
    for i, column in enumerate(header, 1):
        if column in first and column.strip():  # trailing empty header cells (spreadsheets write them) name nothing
            return RowError("duplicate_key", column, f"the header (line 1) names the column {column!r} twice "
                            f"(columns {first[column]} and {i}), so the row holds two values for it",
                            "rename or delete one of the two columns in the header (line 1).")
        first[column] = i
    return None


def csv_rows(data: bytes, name: str):
    """CSV with a header; a cell holding a JSON list is parsed; line numbers count the header and line breaks."""
    lines = list(io.StringIO(data.decode("utf-8", "surrogateescape"), newline=""))
    reader = csv.reader(lines)
    header, prev = next(reader, []), 1
    repeated = _repeated_column(header)
    try:
        for cells in reader:
            start, prev = prev + 1, reader.line_num
            raw = "".join(lines[start - 1: prev]).rstrip("\r\n")
            if not any(c.strip() for c in cells):
                continue
            if NOT_UTF8.search(raw):
                yield "line", start, RowError("undecodable_bytes", "(line)", "bytes that are not UTF-8"), \
                    raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            elif repeated:
                yield "line", start, repeated, raw
            elif len(cells) != len(header):
                yield "line", start, RowError("bad_structure", "(row)", f"{len(cells)} cells, the header has "
                                              f"{len(header)}"), raw
            else:
                yield "line", start, {h: _csv_cell(c) for h, c in zip(header, cells, strict=True)}, raw
    except csv.Error as err:
        raise DataError(f"{name}, line {reader.line_num}: the CSV cannot be parsed further ({err}). "
                        "Fix: check the quoting on that line.") from None


def _parquet_rows(data: bytes, name: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        raise DataError(f"{name}: the file is empty (0 bytes), so it is not a Parquet file. Fix: write it again "
                        "(e.g. Dataset.to_parquet), or give the rows as JSON lines.")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{name}: not a Parquet file that can be read ({type(err).__name__}: {err}). Fix: write "
                        "it again (e.g. Dataset.to_parquet), or give the rows as JSON lines.") from None
    return (("record", i, row, row) for i, row in enumerate(table.to_pylist()))


def file_format(path: Path) -> tuple[str | None, bool]:
    """(format, gzipped by name) from the file name: pairs.jsonl -> jsonl; pairs.jsonl.gz -> jsonl, True."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        return (FILE_FORMATS.get(suffixes[-2]) if len(suffixes) > 1 else None), True
    return FILE_FORMATS.get(suffixes[-1] if suffixes else ""), False


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:  # no permission, a device or /proc file that refuses reads, a disk error
        raise DataError(f"{name}: cannot read the file ({err.strerror or err}). Fix: check that it is a regular "
                        "file you may read (ls -l; chmod u+r on your own file), or copy it somewhere readable."
                        ) from None


def _file_bytes(path: Path, name: str) -> tuple[bytes, str]:
    data = _read_bytes(path, name)
    if not data.startswith(GZIP_MAGIC):
        return data, ""
    try:
        data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:  # a bad header or a cut file: OSError/EOFError; a bad block: zlib
        raise DataError(f"{name}: a gzip file that cannot be decompressed ({err}): cut short or corrupt. "
                        "Fix: copy or download it again.") from None
    return data, "gzip-compressed: decompressed while reading"


def file_records(path: Path):
    """-> (name, format, note, records) for a local file; DataError for one that cannot be read at all."""
    name = str(path)
    fmt, _ = file_format(path)
    data, note = _file_bytes(path, name)
    if fmt == "parquet":
        return name, fmt, note, _parquet_rows(data, name)
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not data
    if not data.strip():
        return name, fmt, "the file is empty: no rows", iter(())
    if fmt == "csv":
        return name, fmt, note, csv_rows(data, name)
    fmt, doc_note, records = json_rows(data, name)  # .jsonl too: it may hold an array or one object
    return name, fmt, "; ".join(n for n in (note, doc_note) if n), records


def dataset_records(dataset):
    return (("record", i, row, row) for i, row in enumerate(dataset))


@contextlib.contextmanager
def no_cycle_collection():
    """Pause Python's cycle collector during bulk loading (rows hold no cycles; it cost ~30% of a load, measured)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def write_jsonl(rows, path) -> Path:
    """Write rows (a `Dataset` or a list of dicts) as UTF-8 JSON lines (folders created); return the path.

    Raises:
        ValueError: a NaN or infinite number, which JSON cannot hold (nothing is written as a bare NaN).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            try:
                f.write(json.dumps(row, ensure_ascii=False, default=str, allow_nan=False) + "\n")
            except ValueError:
                raise ValueError(f"{path}, row {i}: a NaN or infinite number, which JSON cannot hold (it would "
                                 f"be written as a bare NaN that other readers reject): {row!r}"[:400]) from None
    return path


def read_jsonl(path) -> list[dict]:
    """The rows of a JSON-lines file the kit wrote itself (RUN_DIR/data, RUN_DIR/scores): no checks, unlike a learner's
    file, which goes through `helpers.data.load_preferences`."""
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
