"""The kit loads weights from safetensors only: every load says so, and a pickle-only folder is refused clearly."""

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.env import KIT_ROOT, KitError, require_safetensors

WEIGHT_LOADERS = re.compile(r"(AutoModel\w*|LlamaForCausalLM|Qwen2ForCausalLM|model_cls)\.from_pretrained\(")


def _calls(text: str):
    for match in WEIGHT_LOADERS.finditer(text):
        i, depth = match.end(), 1
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield text[: match.start()].count("\n") + 1, text[match.start(): i]


def test_every_weight_load_passes_use_safetensors():
    files = [*KIT_ROOT.glob("helpers/*.py"), *KIT_ROOT.glob("notebooks/src/*.py"), *KIT_ROOT.glob("benchmarks/*.py")]
    loads, missing = 0, []
    for path in files:
        for line, call in _calls(path.read_text("utf-8")):
            if "(..." in call or "gguf_file=" in call:  # helpers.smol reads the wheel's GGUF: typed tensors, no pickle
                continue
            loads += 1
            if "use_safetensors=True" not in call:
                missing.append(f"{path.relative_to(KIT_ROOT)}:{line}: {call.splitlines()[0]}")
    assert loads >= 15 and not missing, missing


@pytest.fixture(scope="module")
def pickled(tiny_rm_base, tmp_path_factory):
    """The tiny RM base and a LoRA adapter for it, each saved as PyTorch pickles only (.bin)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("pickled")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_base, num_labels=1, use_safetensors=True)
    model.config.save_pretrained(root / "model")  # transformers 5 always writes safetensors: pickle by hand
    torch.save(model.state_dict(), root / "model" / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(tiny_rm_base).save_pretrained(root / "model")
    peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj"]))
    peft_model.save_pretrained(root / "adapter")
    weights = root / "adapter" / "adapter_model.safetensors"
    torch.save(load_file(weights), root / "adapter" / "adapter_model.bin")  # what PEFT would load in its place
    weights.unlink()
    assert not list(root.rglob("*.safetensors")) and list(root.rglob("*.bin"))
    return root


def test_a_pickle_only_folder_is_refused_with_a_clear_message(pickled, tiny_rm_base, tmp_path):
    from helpers.merge import load_as_trained
    from helpers.merge_shards import merge_adapter_by_shard
    from helpers.score import RewardScorer

    clear = r"only PyTorch pickle files \((pytorch_model|adapter_model)\.bin\)\. The kit loads safetensors only"
    with pytest.raises(KitError, match=clear):
        RewardScorer.from_pretrained(pickled / "model")
    with pytest.raises(KitError, match=clear):
        merge_adapter_by_shard(tiny_rm_base, pickled / "adapter", tmp_path / "merged", torch.float32, pad_token_id=0)
    with pytest.raises(KitError, match=clear):
        load_as_trained(pickled / "model", pickled / "adapter", None, torch.float32, pad_token_id=0)
    assert not (tmp_path / "merged").exists()
    require_safetensors(tiny_rm_base)  # a safetensors folder passes
    require_safetensors("meta-llama/Meta-Llama-3-8B")  # a Hub id is left to from_pretrained(use_safetensors=True)
    assert Path(tiny_rm_base, "model.safetensors").exists()
