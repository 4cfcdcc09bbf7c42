"""helpers.kto (data part): unpairing keeps every row, mixing fills each batch with both labels, Eq. 8."""

from collections import Counter

import pytest
from datasets import Dataset
from trl.data_utils import unpair_preference_dataset

from helpers.env import KIT_ROOT
from helpers.kto import batches_with_both_labels, kto_class_weights, mix_unpaired, unpair_preferences


@pytest.fixture(scope="module")
def train_pairs(kit_pairs):
    return kit_pairs["train"]


@pytest.fixture(scope="module")
def native_train():
    from helpers.data import load_unpaired

    return load_unpaired(KIT_ROOT / "data" / "unpaired.jsonl", on_error="raise", split="train")[0]


def test_unpair_gives_one_row_per_answer_with_prompt_and_metadata(train_pairs):
    rows = unpair_preferences(train_pairs)
    assert len(rows) == 2 * len(train_pairs) and rows["label"][:4] == [True, False, True, False]
    assert rows[0]["completion"] == train_pairs[0]["chosen"]
    assert rows[1]["completion"] == train_pairs[0]["rejected"]
    assert rows[0]["prompt"] == rows[1]["prompt"] == train_pairs[0]["prompt"]
    assert {"id", "category", "language", "failure_mode", "split", "source"} <= set(rows.column_names)
    assert set(rows["source"]) == {"pairs"} and "chosen" not in rows.column_names


def test_unpair_refuses_rows_without_pairs():
    with pytest.raises(ValueError, match="load_preferences"):
        unpair_preferences(Dataset.from_dict({"prompt": ["q"], "completion": ["a"], "label": [True]}))


def test_batch_of_two_works_when_labels_are_balanced():
    mixed = mix_unpaired(unpaired(10, 10), batch_size=2, seed=0)
    assert batches_with_both_labels(mixed, 2) == (10, 10)


def test_trl_unpairing_leaves_single_label_batches(train_pairs):
    """Why mix_unpaired exists: TRL's unpair_preference_dataset emits long runs of one label."""
    both, total = batches_with_both_labels(unpair_preference_dataset(train_pairs), 8)
    assert both <= 1 < total


@pytest.mark.parametrize("batch_size", [3, 4, 8, 16])
@pytest.mark.parametrize("seed", [0, 42])
def test_every_batch_holds_both_labels_and_no_row_is_lost(train_pairs, native_train, batch_size, seed):
    derived = unpair_preferences(train_pairs)
    mixed = mix_unpaired(derived, native_train, batch_size=batch_size, seed=seed)
    both, total = batches_with_both_labels(mixed, batch_size)
    assert both == total == -(-len(mixed) // batch_size)
    assert len(mixed) == len(derived) + len(native_train)
    before = [(r["id"], r["label"]) for part in (derived, native_train) for r in part]
    assert Counter(zip(mixed["id"], mixed["label"], strict=True)) == Counter(before)
    assert Counter(mixed["source"]) == {"pairs": len(derived), "native": len(native_train)}


def test_mixing_is_deterministic_for_a_seed(train_pairs, native_train):
    derived = unpair_preferences(train_pairs)
    first, again = (mix_unpaired(derived, native_train, 8, seed=1) for _ in range(2))
    other = mix_unpaired(derived, native_train, 8, seed=2)
    assert first["id"] == again["id"] and first["label"] == again["label"]
    assert first["id"] != other["id"]


def unpaired(n_good: int, n_bad: int) -> Dataset:
    n = n_good + n_bad
    return Dataset.from_dict({"id": [str(i) for i in range(n)], "prompt": ["q"] * n, "completion": ["a"] * n,
                              "label": [True] * n_good + [False] * n_bad})


@pytest.mark.parametrize(("n_good", "n_bad", "batch_size", "match"), [
    (4, 4, 1, "at least 2"),
    (6, 0, 2, "Only one label"),
])
def test_impossible_mixes_say_how_to_fix_them(n_good, n_bad, batch_size, match):
    with pytest.raises(ValueError, match=match):
        mix_unpaired(unpaired(n_good, n_bad), batch_size=batch_size, seed=0)


@pytest.mark.parametrize(("n_good", "n_bad", "batch_size", "match", "both"), [
    (2, 14, 4, r"cannot put both labels in every batch of 4.*batch_size=8 would", 2),
    (3, 4, 2, r"batch_size=4 would", 3),
    (10, 11, 4, r"21 rows .* last batch of one row\)\..*batch_size=6 would", 5),
])
def test_mixes_that_leave_one_label_batches_warn_and_spread_the_rarer_label(n_good, n_bad, batch_size, match,
                                                                             both):
    """KTO trains on one-label batches (its KL reference point ignores labels), so this warns, not stops."""
    with pytest.warns(UserWarning, match=match) as caught:
        mixed = mix_unpaired(unpaired(n_good, n_bad), batch_size=batch_size, seed=0)
    assert "KL reference point comes from the other completions" in str(caught[0].message)
    assert sorted(mixed["id"], key=int) == [str(i) for i in range(n_good + n_bad)]  # every row, once
    assert batches_with_both_labels(mixed, batch_size)[0] == both


@pytest.mark.parametrize(("n_desirable", "n_undesirable"), [(100, 300), (283, 341), (300, 100), (100, 100),
                                                            (120, 100), (1, 1000), (1000, 1)])
def test_class_weights_put_the_ratio_in_the_papers_band(n_desirable, n_undesirable):
    w_d, w_u = kto_class_weights(n_desirable, n_undesirable)
    assert 1.0 in (w_d, w_u)
    assert 1.0 <= w_d * n_desirable / (w_u * n_undesirable) <= 4 / 3
    # TRL's own check (kto_trainer.py): desirable_weight in [1, 1.33] * n_U * w_U / n_D, rounded to 2 places
    low, high = (round(n_undesirable * w_u / n_desirable * f, 2) for f in (1, 1.33))
    assert n_desirable == n_undesirable or low <= w_d <= high


def test_class_weights_aim_at_the_middle_and_leave_balanced_data_alone():
    w_d, w_u = kto_class_weights(100, 300)
    assert w_u == 1.0 and w_d * 100 / 300 == pytest.approx(7 / 6, abs=1e-3)
    assert kto_class_weights(110, 100) == (1.0, 1.0)


@pytest.mark.parametrize(("n_desirable", "n_undesirable"), [(0, 10), (10, 0), (-1, 5)])
def test_class_weights_need_both_labels(n_desirable, n_undesirable):
    with pytest.raises(ValueError, match="KTO needs rows of both labels"):
        kto_class_weights(n_desirable, n_undesirable)
