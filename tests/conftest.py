"""Shared fixtures: the offline tiny models and the kit's own pairs, built once per test session."""

import warnings

import pytest

from helpers.env import KIT_ROOT, quiet_warnings

quiet_warnings()
warnings.filterwarnings("ignore", category=UserWarning, module="bitsandbytes")


@pytest.fixture(scope="session")
def tiny_rm_base(tmp_path_factory):
    """A tiny LLaMA-3-style base (random weights, tokenizer trained on the kit's train text)."""
    from helpers.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny-llama3"
    build_tiny_model("llama3", path, seed=0, warmup_steps=0)
    return path


@pytest.fixture(scope="session")
def kit_pairs():
    """The kit's preference pairs, normalised to TRL's conversational format: {"train": ..., "test": ...}."""
    from helpers.data import load_preferences

    pairs, report = load_preferences(KIT_ROOT / "data" / "preferences.jsonl", on_error="raise")
    assert report["dropped"] == 0
    return {split: pairs.filter(lambda row, s=split: row["split"] == s) for split in ("train", "test")}
