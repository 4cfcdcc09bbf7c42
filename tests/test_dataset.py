"""The kit's own data files: size, mix, clean splits, honest labels, and zero rows lost when loading."""

import json
from collections import Counter

import pytest

from helpers.data import load_preferences, load_unpaired
from helpers.env import KIT_ROOT

DATA = KIT_ROOT / "data"
SEED_PROMPT = "什么是人工智能?"


def read(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text("utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pairs():
    return read("preferences.jsonl")


@pytest.fixture(scope="module")
def unpaired():
    return read("unpaired.jsonl")


def test_size_and_mix(pairs):
    assert len(pairs) >= 300
    assert len({r["category"] for r in pairs}) >= 6
    assert sum(r["language"] == "zh" for r in pairs) >= 0.15 * len(pairs)
    assert len({r["id"] for r in pairs}) == len(pairs)


def test_seed_example_is_present(pairs):
    [seed] = [r for r in pairs if r["prompt"] == SEED_PROMPT]
    assert seed["id"] == "chinese-001" and seed["language"] == "zh"


def test_test_split_is_large_enough(pairs):
    assert Counter(r["split"] for r in pairs)["test"] >= 60


def test_no_prompt_in_both_splits(pairs, unpaired):
    splits = {}
    for row in pairs + unpaired:
        splits.setdefault(row["prompt"], set()).add(row["split"])
    leaked = [p for p, s in splits.items() if len(s) > 1]
    assert not leaked, f"prompts in both train and test: {leaked[:3]}"


def test_length_balanced_matches_character_lengths(pairs):
    wrong = [r["id"] for r in pairs if r["length_balanced"] != (len(r["chosen"]) <= len(r["rejected"]))]
    assert not wrong, f"length_balanced should mean len(chosen) <= len(rejected) in characters: {wrong}"
    assert 0.3 <= sum(r["length_balanced"] for r in pairs) / len(pairs) <= 0.7  # length alone cannot win


def test_unpaired_is_about_one_to_three_with_both_labels_in_each_split(unpaired):
    counts = Counter(r["label"] for r in unpaired)
    assert 2.5 <= counts[False] / counts[True] <= 3.5
    for split in ("train", "test"):
        assert {r["label"] for r in unpaired if r["split"] == split} == {True, False}


@pytest.mark.parametrize(("name", "loader"), [("preferences.jsonl", load_preferences),
                                              ("unpaired.jsonl", load_unpaired)])
def test_every_row_loads_with_zero_drops(name, loader):
    dataset, report = loader(DATA / name)
    assert report["dropped"] == 0, report["first_errors"]
    assert report["read"] == report["kept"] == len(dataset) == len(read(name))
