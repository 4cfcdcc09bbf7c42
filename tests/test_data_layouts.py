"""The public datasets' layouts (tests/public_layouts/, kit-written samples): detected per row, normalised alike."""

import json
from pathlib import Path

import pytest

from helpers.data import DataError, load_preferences, load_unpaired, require_rows

SAMPLES = Path(__file__).parent / "public_layouts"
# (file, loader options, read, kept, layout, the bad row's reason and line)
PAIR_SAMPLES = [
    ("hh_rlhf.jsonl", {}, 4, 3, "hh_rlhf", "bad_structure", 4),
    ("ultrafeedback_binarized.jsonl", {}, 4, 3, "ultrafeedback", "bad_structure", 4),
    ("pku_saferlhf.jsonl", {}, 4, 3, "pku_saferlhf", "bad_label", 4),
    ("shp.jsonl", {}, 4, 3, "shp", "empty_text", 4),
    ("axolotl.jsonl", {}, 4, 3, "axolotl", "wrong_type", 4),
]
UNPAIRED_SAMPLES = [
    ("kto_plain.jsonl", {}, 5, 4, "plain", "bad_label", 5),
    ("kto_conversational.jsonl", {}, 4, 3, "conversational", "bad_structure", 4),
    ("thumbs.jsonl", {"rating_threshold": 4}, 5, 4, "rated_plain", "wrong_type", 5),
]
CASES = [("pairs", *c) for c in PAIR_SAMPLES] + [("unpaired", *c) for c in UNPAIRED_SAMPLES]
LOADERS = {"pairs": load_preferences, "unpaired": load_unpaired}


@pytest.mark.parametrize(("kind", "name", "options", "read", "kept", "layout", "reason", "line"), CASES,
                         ids=[c[1] for c in CASES])
def test_each_public_layout_sample_loads_and_names_its_bad_row(kind, name, options, read, kept, layout, reason,
                                                               line):
    dataset, report = LOADERS[kind](SAMPLES / name, **options)
    assert (report["read"], report["kept"], report["dropped"]) == (read, kept, read - kept)
    assert report["row_formats"] == {layout: kept} and report["dropped_by_reason"] == {reason: 1}
    assert f", line {line}, field " in report["first_errors"][0]
    assert list(dataset["source_line"]) == [n for n in range(1, read + 1) if n != line]
    with pytest.raises(DataError, match=rf"{name}, line {line}, field '.+': .+ Fix: "):
        LOADERS[kind](SAMPLES / name, on_error="raise", **options)


def test_the_same_judgement_in_every_layout_gives_the_same_row(tmp_path):
    prompt, good, bad = "Why is the sea salty?", "Rivers carry salt to it.", "Because of fish."
    user = {"role": "user", "content": prompt}
    rows = [
        {"prompt": prompt, "chosen": good, "rejected": bad},
        {"prompt": prompt, "chosen": [user, {"role": "assistant", "content": good}],
         "rejected": [user, {"role": "assistant", "content": bad}], "score_chosen": 8, "score_rejected": 2},
        {"prompt": prompt, "response_0": bad, "response_1": good, "better_response_id": 1},
        {"history": prompt, "human_ref_A": good, "human_ref_B": bad, "labels": 1},
        {"context": prompt, "chosen": good, "rejected": bad, "rating": 4.5},
        {"chosen": f"\n\nHuman: {prompt}\n\nAssistant: {good}", "rejected": f"\n\nHuman: {prompt}\n\nAssistant: {bad}"},
    ]
    expected = {"prompt": [user], "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}]}
    for i, row in enumerate(rows):
        path = tmp_path / f"{i}.jsonl"
        path.write_text(json.dumps(row) + "\n", encoding="utf-8")
        dataset, _ = load_preferences(path, on_error="raise")
        assert {k: dataset[0][k] for k in expected} == expected, row


def test_margin_only_when_asked_and_from_the_scores():
    plain, _ = load_preferences(SAMPLES / "ultrafeedback_binarized.jsonl")
    assert "margin" not in plain.column_names
    uf, _ = load_preferences(SAMPLES / "ultrafeedback_binarized.jsonl", margin=True)
    assert list(uf["margin"]) == [6.0, 6.5, 9.0]  # score_chosen - score_rejected
    shp, _ = load_preferences(SAMPLES / "shp.jsonl", margin=True)
    assert list(shp["margin"]) == [112.0, 59.0, 37.0]  # the preferred answer's score minus the other's
    _, pku = load_preferences(SAMPLES / "pku_saferlhf.jsonl", margin=True)
    assert pku["dropped_by_reason"] == {"missing_field": 3, "bad_label": 1} and pku["kept"] == 0


def test_ratings_need_an_explicit_threshold():
    _, report = load_unpaired(SAMPLES / "thumbs.jsonl")
    assert report["dropped_by_reason"] == {"missing_field": 5} and "rating_threshold=" in report["first_errors"][0]
    dataset, _ = load_unpaired(SAMPLES / "thumbs.jsonl", rating_threshold=4)
    assert list(dataset["label"]) == [True, False, True, False]


def test_a_dataset_folder_loads_through_load_dataset_with_split_and_limit():
    dataset, report = load_preferences(SAMPLES / "uf_folder", split="test", limit=2)
    assert (report["format"], report["read"], report["kept"]) == ("folder", 2, 2)
    assert dataset[0]["chosen"][0]["content"] == "Merci."
    whole, report = load_preferences(SAMPLES / "uf_folder")  # split "train" by default
    assert report["kept"] == 3 and report["row_formats"] == {"ultrafeedback": 3}
    with pytest.raises(DataError, match="uf_folder: cannot load it from the local dataset folder"):
        load_preferences(SAMPLES / "uf_folder", split="validation")


@pytest.mark.parametrize(("content", "match"), [
    ("", r"no usable pairs: no rows were read \(the file is empty"),
    ('{"prompt": "P?", "chosen": "A."}\n{"prompt": "Q?"}\n', r"all 2 rows read were dropped \{'missing_field': 2\}"),
])
def test_nothing_usable_stops_with_what_was_read(tmp_path, content, match):
    path = tmp_path / "pairs.jsonl"
    path.write_text(content, encoding="utf-8")
    _, report = load_preferences(path)
    with pytest.raises(DataError, match=match):
        require_rows(report, "pairs")


def test_the_length_audit_names_rows_without_an_id_by_their_line(tiny_rm_base):
    from transformers import AutoTokenizer

    from helpers.audit import audit_lengths
    from helpers.train import prepare_reward_tokenizer

    tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(tiny_rm_base))
    dataset, _ = load_preferences(SAMPLES / "pku_saferlhf.jsonl")
    audit = audit_lengths(dataset, tokenizer, max_length=20)
    assert audit["over_max_length_rows"] and all(r["id"].startswith("line ") for r in audit["over_max_length_rows"])
    assert {r["id"] for r in audit["over_max_length_rows"]} <= {"line 1", "line 2", "line 3"}
