"""helpers.data on inputs beyond the bad-data corpus: every one ends kept, or dropped with file, line and field.

Each case is a fault a real file has been seen to carry (issue 14). Report mode must never stop on one row and
its counts must add up; raise mode must stop with the file, line (or record) and field.
"""

import gzip
import json
import math
import re

import pytest

from helpers.data import DataError, load_preferences, load_unpaired, write_jsonl

GOOD = [{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
        {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Go away."}]


def lines(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)


def bad_line(chosen_json: str) -> str:
    """A JSON line whose `chosen` value is the given JSON text, verbatim."""
    return '{"prompt": "Count to two.", "chosen": ' + chosen_json + ', "rejected": "Three."}'


# (case, the middle line between two good rows, reason, field)
ROW_FAULTS = [
    ("lone surrogate escape", bad_line('"a\\ud83d"'), "invalid_unicode", "chosen"),
    ("nested 1000 levels", bad_line("[" * 1000 + "]" * 1000), "malformed_json", "(line)"),
    ("5000-digit integer", bad_line("1" * 5000), "wrong_type", "chosen"),
    ("only a zero-width space", bad_line('"\\u200b"'), "empty_text", "chosen"),
    ("only control characters", bad_line('"\\u0001\\u0002\\u007f"'), "empty_text", "chosen"),
    ("same answer but a zero-width space", '{"prompt": "P?", "chosen": "same\\u200b", "rejected": "same"}',
     "identical_pair", "rejected"),
    ("same answer but NFD accents", '{"prompt": "P?", "chosen": "caf\\u00e9", "rejected": "cafe\\u0301"}',
     "identical_pair", "rejected"),
    ("duplicate key", '{"prompt": "P?", "chosen": "A.", "chosen": "B.", "rejected": "C."}',
     "duplicate_key", "chosen"),
    ("duplicate key in a message", '{"prompt": [{"role": "user", "content": "P?", "content": "Q?"}], '
     '"chosen": "A.", "rejected": "C."}', "duplicate_key", "prompt[0].content"),
    ("NaN rating", '{"prompt": "P?", "chosen": "A.", "rejected": "C.", "rating": NaN}', "wrong_type", "rating"),
    ("Infinity rating", '{"prompt": "P?", "chosen": "A.", "rejected": "C.", "rating": -Infinity}',
     "wrong_type", "rating"),
]


@pytest.mark.parametrize(("case", "middle", "reason", "field"), ROW_FAULTS, ids=[c[0] for c in ROW_FAULTS])
def test_a_bad_row_is_dropped_with_its_line_and_field(tmp_path, case, middle, reason, field):
    path = tmp_path / "pairs.jsonl"
    path.write_text(lines(GOOD[0], middle, GOOD[1]), encoding="utf-8")
    rejected = tmp_path / "rejected.jsonl"
    dataset, report = load_preferences(path, rejected_path=rejected)
    assert (report["read"], report["kept"], report["dropped"]) == (3, 2, 1), case
    assert report["dropped_by_reason"] == {reason: 1}, report["first_errors"]
    [dropped] = [json.loads(line) for line in rejected.read_text("utf-8").splitlines()]
    assert (dropped["line"], dropped["field"]) == (2, field), dropped["message"]
    assert list(dataset["source_line"]) == [1, 3]
    with pytest.raises(DataError, match=rf"pairs.jsonl, line 2, field {re.escape(repr(field))}"):
        load_preferences(path, on_error="raise")


def test_duplicate_differing_only_by_invisible_characters(tmp_path):
    path = tmp_path / "pairs.jsonl"
    copy = {**GOOD[1], "rejected": "Go\u00a0away.\u200b", "chosen": "\ufeffHi!"}
    path.write_text(lines(GOOD[0], GOOD[1], copy), encoding="utf-8")
    dataset, report = load_preferences(path)
    assert report["dropped_by_reason"] == {"duplicate_pair": 1}, report["first_errors"]
    assert "same prompt and answers as line 2" in report["first_errors"][0]
    assert dataset[1]["rejected"][0]["content"] == "Go away."  # the kept text is not rewritten


def test_kept_text_keeps_its_own_characters(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(lines({"prompt": "P?", "chosen": "zero\u200bwidth", "rejected": "other"}), encoding="utf-8")
    dataset, _ = load_preferences(path, on_error="raise")
    assert dataset[0]["chosen"][0]["content"] == "zero\u200bwidth"


def test_ratings_are_never_written_as_bare_nan(tmp_path):
    with pytest.raises(ValueError, match="NaN|finite"):
        write_jsonl([{"rating": math.nan}], tmp_path / "out.jsonl")


def test_long_csv_cell_is_read_with_its_neighbours(tmp_path):
    path = tmp_path / "pairs.csv"
    long = "word " * 40_000  # 200,000 characters: past csv's default field limit of 131,072
    path.write_text(f"prompt,chosen,rejected\nA?,yes,no\nB?,{long},short\nC?,fine,bad\n", encoding="utf-8")
    dataset, report = load_preferences(path)
    assert (report["read"], report["kept"]) == (3, 3) and list(dataset["source_line"]) == [2, 3, 4]


@pytest.mark.parametrize(("content", "match"), [(b"", "empty"), (b"PAR1 not really parquet", "not a Parquet")])
def test_broken_parquet_is_one_clear_error(tmp_path, content, match):
    path = tmp_path / "pairs.parquet"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"pairs.parquet.*{match}.*Fix: "):
        load_preferences(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_empty_file_reads_nothing_and_says_so(tmp_path, suffix):
    path = tmp_path / f"pairs{suffix}"
    path.write_bytes(b"")
    dataset, report = load_preferences(path)
    assert (report["read"], report["kept"], len(dataset)) == (0, 0, 0)
    assert "empty" in report["note"]


def test_json_file_holding_one_object_is_one_row(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(GOOD[0], indent=2), encoding="utf-8")
    dataset, report = load_preferences(path)
    assert (report["read"], report["kept"]) == (1, 1)


def test_json_object_wrapping_a_list_reads_the_list(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": GOOD + [{"prompt": "P?", "chosen": "x"}]}, indent=2), encoding="utf-8")
    dataset, report = load_preferences(path)
    assert (report["read"], report["kept"], report["dropped"]) == (3, 2, 1)
    assert "data" in report["note"] and "record 2" in report["first_errors"][0]


def test_column_oriented_json_becomes_rows(tmp_path):
    path = tmp_path / "columns.json"
    path.write_text(json.dumps({k: [r[k] for r in GOOD] for k in GOOD[0]}), encoding="utf-8")
    dataset, report = load_preferences(path)
    assert (report["read"], report["kept"]) == (2, 2) and "column" in report["note"]
    assert dataset[1]["chosen"][0]["content"] == "Hi!"


def test_column_oriented_json_with_unequal_columns_is_refused_once(tmp_path):
    path = tmp_path / "columns.json"
    path.write_text(json.dumps({"prompt": ["A", "B"], "chosen": ["x"], "rejected": ["y", "z"]}), encoding="utf-8")
    with pytest.raises(DataError, match="columns.json: .*column.*lengths"):
        load_preferences(path)


def test_cr_only_line_endings_are_lines(tmp_path):
    path = tmp_path / "mac.jsonl"
    path.write_bytes(lines(*GOOD, {"prompt": "P?", "chosen": "A.", "rejected": "B."}).replace("\n", "\r").encode())
    dataset, report = load_preferences(path)
    assert (report["read"], report["kept"]) == (3, 3) and list(dataset["source_line"]) == [1, 2, 3]


@pytest.mark.parametrize("name", ["pairs.jsonl.gz", "pairs.json.gz", "pairs.jsonl"])
def test_gzip_is_read_as_such(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress(lines(*GOOD).encode()))
    dataset, report = load_preferences(path)
    assert (report["read"], report["kept"]) == (2, 2)


def test_unpaired_rows_get_the_same_hardening(tmp_path):
    path = tmp_path / "kto.jsonl"
    path.write_text(lines({"prompt": "P?", "completion": "A.", "label": True},
                          '{"prompt": "P?", "completion": "\\u200b", "label": false}',
                          {"prompt": "P?", "completion": "A.\u200b", "label": True},
                          '{"prompt": "Q?", "completion": "B.", "label": true, "label": false}'), encoding="utf-8")
    _, report = load_unpaired(path)
    assert report["dropped_by_reason"] == {"empty_text": 1, "duplicate_row": 1, "duplicate_key": 1}


def test_invisible_class_is_unicode_s_non_space_control_and_format_characters():
    import sys
    import unicodedata

    from helpers.rows import INVISIBLE

    expected = {c for c in range(sys.maxunicode + 1)
                if unicodedata.category(chr(c)) in ("Cc", "Cf") and not chr(c).isspace()}
    matched = {c for c in range(sys.maxunicode + 1) if INVISIBLE.match(chr(c))}
    assert matched == expected


def _gzip_with_a_corrupt_block(data: bytes) -> bytes:
    packed = bytearray(gzip.compress(data))
    packed[30] ^= 0xFF  # inside the first deflate block: zlib.error, not OSError
    packed[40] ^= 0xFF
    return bytes(packed)


def test_gzip_with_a_corrupt_deflate_block_is_one_clear_error(tmp_path):
    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(_gzip_with_a_corrupt_block(lines(*GOOD * 500).encode()))
    with pytest.raises(DataError, match=r"pairs.jsonl.gz: a gzip file that cannot be decompressed .*Fix: "):
        load_preferences(path)


def test_gzipped_parquet_is_read_like_parquet(tmp_path):
    from datasets import Dataset

    plain = tmp_path / "pairs.parquet"
    Dataset.from_list(GOOD).to_parquet(plain)
    path = tmp_path / "pairs.parquet.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    dataset, report = load_preferences(path)
    assert (report["read"], report["kept"], report["format"]) == (2, 2, "parquet")
    assert "gzip" in report["note"] and dataset[1]["chosen"][0]["content"] == "Hi!"
    path.write_bytes(_gzip_with_a_corrupt_block(plain.read_bytes() * 20))
    with pytest.raises(DataError, match=r"pairs.parquet.gz: a gzip file that cannot be decompressed"):
        load_preferences(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_file_that_cannot_be_read_is_one_clear_error(tmp_path, suffix):
    """A link to /proc/self/mem is a 'file' whose read fails (EIO): the error names the file, not a traceback."""
    path = tmp_path / f"pairs{suffix}"
    path.symlink_to("/proc/self/mem")
    with pytest.raises(DataError, match=rf"pairs{suffix}: cannot read the file \(.*Input/output error.*Fix: "):
        load_preferences(path)


def test_a_file_without_read_permission_is_one_clear_error(tmp_path, monkeypatch):
    from pathlib import Path

    path = tmp_path / "pairs.jsonl"
    path.write_text(lines(*GOOD), encoding="utf-8")

    def denied(self):  # chmod 000 does not stop root, who runs CI: the error a learner gets, raised directly
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(DataError, match=r"pairs.jsonl: cannot read the file \(Permission denied\).*Fix: .*chmod"):
        load_preferences(path)


def test_repeated_csv_column_is_reported_like_a_repeated_json_key(tmp_path):
    """CSV keeps the last of two same-named columns silently, JSON the last of two same-named keys: both reported."""
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected,chosen\nA?,yes,no,maybe\nB?,fine,bad,good\n", encoding="utf-8")
    rejected = tmp_path / "rejected.jsonl"
    _, report = load_preferences(path, rejected_path=rejected)
    assert (report["read"], report["kept"], report["dropped_by_reason"]) == (2, 0, {"duplicate_key": 2})
    dropped = [json.loads(line) for line in rejected.read_text("utf-8").splitlines()]
    assert [(d["line"], d["field"]) for d in dropped] == [(2, "chosen"), (3, "chosen")]
    assert "pairs.csv, line 2, field 'chosen': the header (line 1) names the column 'chosen' twice " \
           "(columns 2 and 4)" in dropped[0]["message"]
    with pytest.raises(DataError, match=r"pairs.csv, line 2, field 'chosen': .*twice.*Fix: "):
        load_preferences(path, on_error="raise")
    json_path = tmp_path / "pairs.jsonl"
    json_path.write_text('{"prompt": "A?", "chosen": "yes", "rejected": "no", "chosen": "maybe"}\n')
    _, json_report = load_preferences(json_path)
    assert json_report["dropped_by_reason"] == {"duplicate_key": 1}
    path.write_text("prompt,chosen,rejected,,\nA?,yes,no,,\n", encoding="utf-8")  # a spreadsheet's empty columns
    assert load_preferences(path)[1]["kept"] == 1
