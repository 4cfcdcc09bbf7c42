"""helpers.data: every layout loads to the same normalised row; every defect is named, counted, located."""

import csv
import json
import re
from pathlib import Path

import pytest
from datasets import Dataset

from helpers.data import (
    DataError,
    load_preferences,
    load_unpaired,
    parse_label,
    require_inputs,
    split_dataset,
    write_jsonl,
)
from helpers.env import KIT_ROOT, KitError

BAD = Path(__file__).parent / "bad_data"
SEED_PROMPT = "什么是人工智能?"


@pytest.fixture(scope="module")
def seed() -> dict:
    lines = (KIT_ROOT / "data" / "preferences.jsonl").read_text("utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    return next(r for r in rows if r["prompt"] == SEED_PROMPT)


def expected(seed: dict) -> dict:
    return {"prompt": [{"role": "user", "content": SEED_PROMPT}],
            "chosen": [{"role": "assistant", "content": seed["chosen"]}],
            "rejected": [{"role": "assistant", "content": seed["rejected"]}]}


def layouts(seed: dict) -> dict[str, dict]:
    """The seed pair written in every supported row layout."""
    user, c, r = {"role": "user", "content": SEED_PROMPT}, seed["chosen"], seed["rejected"]

    def hh(answer):
        return f"\n\nHuman: {SEED_PROMPT}\n\nAssistant: {answer}"

    return {
        "plain": {"prompt": SEED_PROMPT, "chosen": c, "rejected": r},
        "conversational": {"prompt": [user], "chosen": [{"role": "assistant", "content": c}],
                           "rejected": [{"role": "assistant", "content": r}]},
        "conversational_implicit": {"chosen": [user, {"role": "assistant", "content": c}],
                                    "rejected": [user, {"role": "assistant", "content": r}]},
        "axolotl_input": {"input": SEED_PROMPT, "chosen": c, "rejected": r, "rating": 4.5},
        "axolotl_context": {"context": SEED_PROMPT, "chosen": c, "rejected": r},
        "hh_rlhf": {"chosen": hh(c), "rejected": hh(r)},
    }


def write(path: Path, rows: list[dict], fmt: str) -> Path:
    if fmt == "jsonl":
        write_jsonl(rows, path)
    elif fmt == "json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                              for k, v in row.items()} for row in rows)
    else:
        Dataset.from_list(rows).to_parquet(str(path))
    return path


def normalised(dataset: Dataset) -> dict:
    return {k: dataset[0][k] for k in ("prompt", "chosen", "rejected")}


@pytest.mark.parametrize("layout", ["plain", "conversational", "conversational_implicit", "axolotl_input",
                                    "axolotl_context", "hh_rlhf"])
@pytest.mark.parametrize("fmt", ["dataset", "jsonl", "json", "csv", "parquet"])
def test_seed_pair_round_trips_through_every_layout_and_format(seed, tmp_path, layout, fmt):
    row = {"id": seed["id"], **layouts(seed)[layout]}
    source = Dataset.from_list([row]) if fmt == "dataset" else write(tmp_path / f"seed.{fmt}", [row], fmt)
    dataset, report = load_preferences(source, on_error="raise")
    assert normalised(dataset) == expected(seed)
    assert dataset[0]["id"] == seed["id"] and report["kept"] == report["read"] == 1
    assert report["row_formats"] == {layout.split("_")[0] if layout.startswith("axolotl") else layout: 1}


def test_rating_and_system_kept_from_axolotl_rows(seed):
    row = {"system": "Answer in Chinese.", "input": SEED_PROMPT, "chosen": seed["chosen"],
           "rejected": seed["rejected"], "rating": "4"}
    dataset, _ = load_preferences(Dataset.from_list([row]), on_error="raise")
    assert dataset[0]["prompt"][0] == {"role": "system", "content": "Answer in Chinese."}
    assert dataset[0]["rating"] == 4.0


def test_multi_turn_hh_dialogue_becomes_several_messages():
    shared = "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Name a fruit."
    row = {"chosen": shared + "\n\nAssistant: An apple.", "rejected": shared + "\n\nAssistant: A chair."}
    dataset, _ = load_preferences(Dataset.from_list([row]), on_error="raise")
    assert [m["role"] for m in dataset[0]["prompt"]] == ["user", "assistant", "user"]
    assert dataset[0]["chosen"] == [{"role": "assistant", "content": "An apple."}]


def test_kit_file_loads_whole_and_reloads_from_its_normalised_copy(tmp_path):
    dataset, report = load_preferences(KIT_ROOT / "data" / "preferences.jsonl")
    assert report["read"] == report["kept"] == len(dataset) and report["dropped"] == 0
    copy = write_jsonl(dataset, tmp_path / "train.jsonl")
    again, _ = load_preferences(copy, on_error="raise")
    assert again["chosen"] == dataset["chosen"] and again["prompt"] == dataset["prompt"]


def test_split_selects_rows_and_counts_the_others():
    test, report = load_preferences(KIT_ROOT / "data" / "preferences.jsonl", split="test")
    assert set(test["split"]) == {"test"} and report["read"] == len(test)
    assert report["read"] + report["other_split"] == 335


# ---- the bad-data corpus: (file, loader, reason, where)
CORPUS = [
    ("malformed_json.jsonl", "pairs", "malformed_json", "line 3"),
    ("missing_field.jsonl", "pairs", "missing_field", "line 3"),
    ("wrong_type.jsonl", "pairs", "wrong_type", "line 4"),
    ("empty_text.jsonl", "pairs", "empty_text", "line 2"),
    ("identical_pair.jsonl", "pairs", "identical_pair", "line 3"),
    ("duplicate_pair.jsonl", "pairs", "duplicate_pair", "line 4"),
    ("bad_role.jsonl", "pairs", "bad_role", "line 2"),
    ("bad_structure.jsonl", "pairs", "bad_structure", "line 3"),
    ("unknown_format.jsonl", "pairs", "unknown_format", "line 2"),
    ("undecodable_bytes.jsonl", "pairs", "undecodable_bytes", "line 2"),
    ("hh_mismatch.jsonl", "pairs", "bad_structure", "line 2"),
    ("extra_cell.csv", "pairs", "bad_structure", "line 5"),
    ("not_an_object.json", "pairs", "wrong_type", "record 2"),
    ("bad_label.jsonl", "unpaired", "bad_label", "line 3"),
]
LOADERS = {"pairs": load_preferences, "unpaired": load_unpaired}


@pytest.mark.parametrize(("name", "kind", "reason", "where"), CORPUS)
def test_report_mode_keeps_good_rows_and_names_the_reason(tmp_path, name, kind, reason, where):
    rejected = tmp_path / "rejected.jsonl"
    dataset, report = LOADERS[kind](BAD / name, rejected_path=rejected)
    assert report["dropped_by_reason"] == {reason: 1}
    assert report["kept"] + report["dropped"] == report["read"] and len(dataset) == report["kept"] >= 1
    [dropped] = [json.loads(line) for line in rejected.read_text("utf-8").splitlines()]
    assert set(dropped) >= {"file", "line", "field", "reason", "message", "raw"}
    assert dropped["reason"] == reason and f"{dropped['unit']} {dropped['line']}" == where


@pytest.mark.parametrize(("name", "kind", "reason", "where"), CORPUS)
def test_raise_mode_stops_with_file_and_line(name, kind, reason, where):
    with pytest.raises(DataError, match=rf"{name}, {where}, field '.+': .+ Fix: "):
        LOADERS[kind](BAD / name, on_error="raise")


def test_undecodable_line_does_not_stop_the_file():
    dataset, report = load_preferences(BAD / "undecodable_bytes.jsonl")
    assert dataset["id"] == ["good-1", "good-3"] and report["read"] == 3


def test_csv_lines_count_the_header_and_multi_line_cells():
    dataset, _ = load_preferences(BAD / "extra_cell.csv")
    assert dataset["source_line"] == [2, 3, 6]
    assert dataset[1]["chosen"][0]["content"] == "2 plus 2 is 4.\nEasy."


@pytest.mark.parametrize(("row", "field"), [
    ({"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}, "prompt[0]"),
    ({"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "a"}],
      "rejected": [{"role": "assistant", "content": "b"}]}, "chosen"),
    ({"prompt": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "q"}], "chosen": "a",
      "rejected": "b"}, "prompt[0].role"),
    ({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
      "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "b"}]}, "rejected"),
])
def test_bad_message_structures_name_the_field(row, field):
    with pytest.raises(DataError, match=re.escape(f"record 0, field '{field}'")):
        load_preferences(Dataset.from_list([row]), on_error="raise")


@pytest.mark.parametrize(("value", "label"), [(True, True), (False, False), ("true", True), ("FALSE", False),
                                              (" 1 ", True), ("0", False), (1, True), (0, False)])
def test_labels_accept_bools_and_their_csv_spellings(value, label):
    assert parse_label(value) is label


@pytest.mark.parametrize("value", ["yes", "maybe", 2, 1.0, "", [True]])
def test_other_labels_are_bad_labels(value):
    row = {"prompt": "Say hi.", "completion": "Hi!", "label": value}
    with pytest.raises(DataError, match="field 'label'.*true/false"):
        load_unpaired(Dataset.from_list([row]), on_error="raise")


def test_unpaired_csv_labels_and_kit_file(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("prompt,completion,label\nSay hi.,Hi!,true\nSay bye.,Bye!,0\n", encoding="utf-8")
    dataset, _ = load_unpaired(path, on_error="raise")
    assert dataset["label"] == [True, False] and dataset[0]["completion"][0]["role"] == "assistant"
    kit, report = load_unpaired(KIT_ROOT / "data" / "unpaired.jsonl")
    assert report["dropped"] == 0 and len(kit) == 160


def test_pairs_given_to_load_unpaired_say_which_loader_to_use():
    with pytest.raises(DataError, match="load_preferences"):
        load_unpaired(KIT_ROOT / "data" / "preferences.jsonl", on_error="raise")


def test_invalid_on_error_names_the_valid_values():
    with pytest.raises(ValueError, match="'report', 'raise'"):
        load_preferences(BAD / "bad_role.jsonl", on_error="skip")


@pytest.mark.parametrize(("source", "match"), [("no/such/file.jsonl", "no such file"),
                                               (str(BAD / "README.md"), "unsupported file type '.md'")])
def test_unreadable_sources_are_data_errors(source, match):
    with pytest.raises(DataError, match=match):
        load_preferences(source)


def test_data_error_is_a_value_error_shown_without_a_stack():
    err = DataError("x.jsonl, line 3, field 'chosen': bad")
    assert isinstance(err, ValueError) and isinstance(err, KitError)
    assert "line 3" in err._render_traceback_()[0]


def test_one_preflight_call_per_notebook_names_the_first_notebook_to_run(tmp_path):
    from helpers.data import NOTEBOOK_INPUTS, require_notebook_inputs
    from helpers.profiles import get_profile
    from helpers.runs import list_notebooks

    tiny, gpu = get_profile("tiny"), get_profile("llama3-8b")
    with pytest.raises(KitError, match=r"unpaired_train.jsonl.*Run notebooks/01_prepare_data.ipynb first"):
        require_notebook_inputs("05_kto_unpaired", tmp_path, tiny)
    for name in ("unpaired_train.jsonl", "unpaired_test.jsonl"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / name).write_text("")
    with pytest.raises(KitError, match=r"tiny-qwen2.*Run notebooks/00_setup.ipynb first"):
        require_notebook_inputs("05_kto_unpaired", tmp_path, tiny)
    with pytest.raises(KitError, match=r"03_merge_value_head.json.*Run notebooks/03_merge_value_head.ipynb"):
        require_notebook_inputs("05_kto_unpaired", tmp_path, gpu)  # hub models: nothing to find in RUN_DIR
    for nb in list_notebooks()[1:]:  # every notebook after 00 makes the one call, with its own name
        source = (nb.parent / "src" / f"{nb.stem}.py").read_text()
        assert f'require_notebook_inputs("{nb.stem}", run_dir, profile)' in source, nb.name
    assert set(NOTEBOOK_INPUTS) == {nb.stem for nb in list_notebooks()[1:]}


def test_require_inputs_names_the_notebook_to_run(tmp_path):
    with pytest.raises(KitError, match=r"models.*Run notebooks/00_setup.ipynb first"):
        require_inputs([tmp_path / "models"], notebook="00_setup")
    assert require_inputs([tmp_path], notebook="00_setup") == [tmp_path]


def test_split_dataset_uses_the_split_column_or_splits_by_prompt():
    kit, _ = load_preferences(KIT_ROOT / "data" / "preferences.jsonl")
    by_column = split_dataset(kit)
    assert (len(by_column["train"]), len(by_column["test"])) == (256, 79)
    no_split = kit.remove_columns("split")
    parts = split_dataset(no_split, test_size=0.25, seed=3)
    assert len(parts["train"]) + len(parts["test"]) == len(kit) and set(parts["test"]["split"]) == {"test"}
    assert 0.2 <= len(parts["test"]) / len(kit) <= 0.3
    prompts = {s: {m[0]["content"] for m in parts[s]["prompt"]} for s in parts}
    assert not prompts["train"] & prompts["test"]
    assert split_dataset(no_split, test_size=0.25, seed=3)["test"]["id"] == parts["test"]["id"]


def test_duplicate_names_the_earlier_line():
    with pytest.raises(DataError, match="line 4.*same prompt and answers as line 2"):
        load_preferences(BAD / "duplicate_pair.jsonl", on_error="raise")


def test_hub_names_go_through_load_dataset_only(monkeypatch, seed):
    import datasets

    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        if name == "someone/offline":
            raise ConnectionError("no network")
        return Dataset.from_list([layouts(seed)["plain"]])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dataset, report = load_preferences("someone/prefs", split="test")
    assert calls == [("someone/prefs", "test")] and report["format"] == "hub"
    assert normalised(dataset) == expected(seed)
    with pytest.raises(DataError, match="someone/offline: cannot load it from the Hugging Face Hub"):
        load_preferences("someone/offline")
