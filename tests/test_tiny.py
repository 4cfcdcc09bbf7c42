import warnings

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
)

from helpers.tiny import LLAMA3_SPECIAL_TOKENS, build_tiny_model, build_tokenizer, kit_texts
from helpers.train import prepare_reward_tokenizer

TWO_TURNS = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "什么是人工智能?"}, {"role": "assistant", "content": "AI."}]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    manifests = {style: build_tiny_model(style, root / style, seed=7, warmup_steps=20)
                 for style in ("llama3", "chatml")}
    return root, manifests


def test_same_seed_same_weights_other_seed_other_weights(tiny_dirs, tmp_path):
    root, manifests = tiny_dirs
    again = build_tiny_model("llama3", tmp_path / "again", seed=7, warmup_steps=20)
    other = build_tiny_model("llama3", tmp_path / "other", seed=8)
    assert again["checksum"] == manifests["llama3"]["checksum"]
    assert other["checksum"] != manifests["llama3"]["checksum"]
    assert (root / "llama3" / "tokenizer.json").read_bytes() == (tmp_path / "again" / "tokenizer.json").read_bytes()


def test_warm_up_lowers_the_language_model_loss(tiny_dirs):
    _, manifests = tiny_dirs
    assert manifests["llama3"]["loss_last10"] < manifests["llama3"]["loss_first10"]


def test_llama3_tokenizer_is_a_base_tokenizer_with_metas_quirks(tiny_dirs):
    """Like Meta-Llama-3-8B's base tokenizer: no chat template, EOS <|end_of_text|>, no pad, BOS added itself."""
    tok = AutoTokenizer.from_pretrained(tiny_dirs[0] / "llama3")
    for token in LLAMA3_SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(token) != tok.unk_token_id
        assert len(tok(token, add_special_tokens=False).input_ids) == 1
    assert tok.chat_template is None and tok.pad_token is None and tok.eos_token == "<|end_of_text|>"
    with pytest.raises(ValueError, match="chat_template"):
        tok.apply_chat_template(TWO_TURNS, tokenize=False)
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert tok("Hi").input_ids[0] == bos and tok("Hi", add_special_tokens=False).input_ids[0] != bos
    config = AutoConfig.from_pretrained(tiny_dirs[0] / "llama3")
    assert config.pad_token_id is None and config.eos_token_id == tok.eos_token_id and config.bos_token_id == bos


def test_llama3_tokenizer_after_prepare_reward_tokenizer_renders_metas_template(tiny_dirs):
    tok = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(tiny_dirs[0] / "llama3"))
    assert tok.pad_token == "<|finetune_right_pad_id|>" and tok.pad_token_id != tok.eos_token_id
    ids = tok.apply_chat_template(TWO_TURNS, tokenize=True, return_dict=False)
    assert ids.count(tok.bos_token_id) == 1  # the template's BOS only: chat tokenization adds no second one
    assert tok.apply_chat_template(TWO_TURNS, tokenize=False) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n什么是人工智能?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nAI.<|eot_id|>")
    text = "什么是人工智能? Reward models score answers."
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text  # byte-level: lossless


def test_chatml_policy_tokenizer(tiny_dirs):
    tok = AutoTokenizer.from_pretrained(tiny_dirs[0] / "chatml")
    rendered = tok.apply_chat_template(TWO_TURNS[:1], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>"


def test_models_load_like_hub_models(tiny_dirs):
    root, _ = tiny_dirs
    rm = AutoModelForSequenceClassification.from_pretrained(root / "llama3", num_labels=1)
    policy = AutoModelForCausalLM.from_pretrained(root / "chatml")
    assert type(rm).__name__ == "LlamaForSequenceClassification" and rm.score.out_features == 1
    assert type(policy).__name__ == "Qwen2ForCausalLM"


def test_8bit_path_is_real_on_cpu(tiny_dirs):
    import bitsandbytes as bnb

    warnings.filterwarnings("ignore", message="MatMul8bitLt")
    rm = AutoModelForSequenceClassification.from_pretrained(
        tiny_dirs[0] / "llama3", num_labels=1, quantization_config=BitsAndBytesConfig(load_in_8bit=True))
    layer = rm.model.layers[0].mlp.up_proj
    assert isinstance(layer, bnb.nn.Linear8bitLt) and layer.weight.dtype == torch.int8
    ids = torch.tensor([[1, 2, 3]])
    assert torch.isfinite(rm(input_ids=ids).logits).all()


def test_kit_texts_use_the_train_split_only():
    train, test = kit_texts("train"), kit_texts("test")
    assert train and test
    train_prompts = {c[0]["content"] for c in train}
    assert not train_prompts & {c[0]["content"] for c in test}


def test_build_tokenizer_rejects_unknown_style():
    with pytest.raises(ValueError, match="style must be 'llama3' or 'chatml'"):
        build_tokenizer(["a b c"], style="gpt2")


def test_reuse_keeps_an_intact_model_and_rebuilds_a_changed_one(tiny_dirs, tmp_path):
    import shutil

    from helpers.tiny import reusable_tiny_model

    root, manifests = tiny_dirs
    for style in ("llama3", "chatml"):
        kept = reusable_tiny_model(root / style, style, seed=7, warmup_steps=20)
        assert kept["reused"] is True and kept["checksum"] == manifests[style]["checksum"]
    assert reusable_tiny_model(root / "llama3", "llama3", seed=8, warmup_steps=20) is None  # other seed
    copy = tmp_path / "copy"
    shutil.copytree(root / "llama3", copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last tensor
    weights.write_bytes(bytes(data))
    assert reusable_tiny_model(copy, "llama3", seed=7, warmup_steps=20) is None
