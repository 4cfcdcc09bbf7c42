"""helpers.audit and helpers.plots: token counts equal TRL's own, and every over-length pair is listed."""

from types import SimpleNamespace

import pytest
from datasets import Dataset
from matplotlib.figure import Figure
from trl import KTOTrainer, RewardTrainer

from helpers.audit import audit_lengths, audit_unpaired, suggest_max_length, token_lengths
from helpers.data import load_preferences, load_unpaired
from helpers.env import KIT_ROOT
from helpers.plots import plot_category_mix, plot_label_balance, plot_token_lengths, save_figure
from helpers.tiny import build_tokenizer, kit_texts
from helpers.train import prepare_reward_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    # a base tokenizer, like Meta-Llama-3-8B's: it gets its chat template and pad token as notebooks 01-02 give it
    return prepare_reward_tokenizer(build_tokenizer([m["content"] for conv in kit_texts("train") for m in conv]))


@pytest.fixture(scope="module")
def pairs():
    return load_preferences(KIT_ROOT / "data" / "preferences.jsonl", on_error="raise")[0]


@pytest.fixture(scope="module")
def unpaired():
    return load_unpaired(KIT_ROOT / "data" / "unpaired.jsonl", on_error="raise")[0]


def trl_reward_ids(dataset, tokenizer, max_length=None):
    """TRL's own preprocessing (RewardTrainer._prepare_dataset reads only these two config fields)."""
    args = SimpleNamespace(max_length=max_length, dataset_num_proc=None)
    return RewardTrainer._prepare_dataset(None, dataset, tokenizer, args, "audit-test")


def test_token_counts_equal_trl_tokenization_on_the_kit_data(pairs, tokenizer):
    ours = token_lengths(pairs, tokenizer, batch_size=64)
    theirs = trl_reward_ids(pairs, tokenizer)
    assert ours["chosen_tokens"] == [len(ids) for ids in theirs["chosen_ids"]]
    assert ours["rejected_tokens"] == [len(ids) for ids in theirs["rejected_ids"]]


def test_token_counts_equal_trl_for_plain_text_pairs(tokenizer):
    plain = Dataset.from_dict({"prompt": ["What is 2+2?", "Name a colour."], "chosen": [" 4.", " Blue."],
                               "rejected": [" 5.", " Seven."]})
    theirs = trl_reward_ids(plain, tokenizer)
    assert token_lengths(plain, tokenizer)["chosen_tokens"] == [len(ids) for ids in theirs["chosen_ids"]]


@pytest.mark.parametrize("max_length", [128, 200, 256])
def test_over_length_pairs_are_exactly_those_trl_drops(pairs, tokenizer, max_length):
    audit = audit_lengths(pairs, tokenizer, max_length)
    kept_by_trl = set(trl_reward_ids(pairs, tokenizer, max_length)["id"])
    listed = {row["id"] for row in audit["over_max_length_rows"]}
    assert listed == set(pairs["id"]) - kept_by_trl and audit["over_max_length"] == len(listed) > 0
    row = audit["over_max_length_rows"][0]
    assert set(row) == {"id", "split", "chosen_tokens", "rejected_tokens"}
    assert max(row["chosen_tokens"], row["rejected_tokens"]) > max_length


def test_audit_stats_per_split_and_side(pairs, tokenizer):
    audit = audit_lengths(pairs, tokenizer, 256)
    assert set(audit["stats"]) == {"train", "test", "all"}
    assert audit["stats"]["train"]["chosen"]["n"] + audit["stats"]["test"]["chosen"]["n"] == len(pairs)
    assert len(audit["lengths"]["chosen_tokens"]) == len(pairs)


def test_pairs_identical_up_to_the_cut_are_listed(tokenizer):
    long_prompt = "please repeat this sentence many times " * 40
    def answers(*texts):
        return [[{"role": "assistant", "content": t}] for t in texts]

    rows = {"id": ["same-head", "short"], "split": ["train", "train"],
            "prompt": [[{"role": "user", "content": long_prompt}], [{"role": "user", "content": "Hi"}]],
            "chosen": answers("Yes.", "Hello!"), "rejected": answers("No.", "Bye.")}
    audit = audit_lengths(Dataset.from_dict(rows), tokenizer, max_length=64)
    assert [r["id"] for r in audit["over_max_length_rows"]] == ["same-head"]
    assert [r["id"] for r in audit["identical_after_truncation_rows"]] == ["same-head"]


@pytest.mark.parametrize(("lengths", "expected"), [
    ([10] * 100, 64), ([100] * 99 + [5000], 128), ([64] * 100, 64), ([65] * 100, 128),
    ([300] * 98 + [900] * 2, 960),
])
def test_suggested_max_length_covers_99_percent_in_multiples_of_64(lengths, expected):
    suggested = suggest_max_length(lengths)
    assert suggested == expected and suggested % 64 == 0
    assert sum(n <= suggested for n in lengths) >= 0.99 * len(lengths)


def test_kto_prompt_audit_matches_trl_kto_filter(unpaired, tokenizer):
    max_length = 40  # small enough that some prompts alone reach it
    audit = audit_unpaired(unpaired, tokenizer, max_length)
    trainer = SimpleNamespace(calculate_KL=False, desirable_weight=1.0, undesirable_weight=1.0,
                              _tokenizer=tokenizer)
    args = SimpleNamespace(max_length=max_length, dataset_num_proc=None, per_device_train_batch_size=2)
    kept = KTOTrainer._prepare_dataset(trainer, unpaired, tokenizer, args, "eval")
    assert set(unpaired["id"]) - set(kept["id"]) == {r["id"] for r in audit["prompt_over_max_length_rows"]}
    assert audit["prompt_over_max_length"] > 0
    ours = [n for n in audit["lengths"]["prompt_tokens"] if n < max_length]
    assert [len(ids) for ids in kept["prompt_ids"]] == ours


def test_figures_are_returned_and_saved(pairs, unpaired, tokenizer, tmp_path):
    figures = {"lengths": plot_token_lengths(audit_lengths(pairs, tokenizer, 256)),
               "categories": plot_category_mix(pairs), "labels": plot_label_balance(unpaired)}
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        assert save_figure(fig, tmp_path, name) == tmp_path / "figures" / f"{name}.png"
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
