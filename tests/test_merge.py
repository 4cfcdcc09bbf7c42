"""helpers.merge: the full-precision merge, the exports, and each way the verifier finds a saved RM broken."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from safetensors.torch import save_file
from test_train import _trainer  # the tiny 8-bit LoRA reward-model recipe of notebook 02
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from helpers.chat import CHATML_CHAT_TEMPLATE
from helpers.merge import (
    MODEL_FILES,
    VALUE_HEAD_FILE,
    RewardModelError,
    adapter_head,
    allowed_diff,
    compare_scores,
    default_system_message,
    export_llamafactory,
    fit_normalization,
    llamafactory_scores,
    llamafactory_template,
    load_as_trained,
    merge_dtype,
    strip_reward_head,
    write_consumer_keys,
    write_reward_head_manifest,
)
from helpers.merge_shards import HEAD_SHARD, INDEX, ensure_merged_model, merge_adapter_by_shard
from helpers.profiles import get_profile
from helpers.score import score_conversations, score_pairs
from helpers.verify import fresh_process_scores, verify_reward_model

N = 24  # test pairs scored through 8-bit layers, which are slow on CPU


@pytest.fixture(scope="module")
def adapter(tiny_rm_base, kit_pairs, tmp_path_factory):
    """A tiny SEQ_CLS adapter saved as notebook 02 saves it, and the trainer's own test scores."""
    trainer = _trainer(tiny_rm_base, kit_pairs, tmp_path_factory.mktemp("ckpt"), max_steps=12)
    trainer.train()
    adapter_dir = tmp_path_factory.mktemp("rm_adapter")
    trainer.save_model(str(adapter_dir))
    scores = score_pairs(trainer.model, trainer.processing_class, kit_pairs["test"].select(range(N)))
    return adapter_dir, scores


def _merge(base_path, adapter_dir, tokenizer):
    base = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, dtype=torch.float32)
    base.config.pad_token_id = tokenizer.pad_token_id
    return PeftModel.from_pretrained(base, str(adapter_dir))


@pytest.fixture(scope="module")
def export(tiny_rm_base, adapter, kit_pairs, tmp_path_factory):
    """The notebook's steps: merge shard by shard in fp32, normalise, export for LLaMA-Factory, write the manifest."""
    adapter_dir, _ = adapter
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    adapted = _merge(tiny_rm_base, adapter_dir, tokenizer)
    before = score_pairs(adapted, tokenizer, kit_pairs["test"])
    in_memory = adapted.merge_and_unload()
    out = merge_adapter_by_shard(tiny_rm_base, adapter_dir, tmp_path_factory.mktemp("rm_merged"), torch.float32,
                                 tokenizer.pad_token_id)
    merged = AutoModelForSequenceClassification.from_pretrained(out)
    after = score_pairs(merged, tokenizer, kit_pairs["test"])
    norm = fit_normalization(after)
    merged.config.update({"value_head_prefix": "score", **norm})
    merged.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_consumer_keys(out)
    export_llamafactory(out, tokenizer, out / "llamafactory", base_path=tiny_rm_base)
    write_reward_head_manifest(out, tokenizer, "tiny-llama3", adapter_dir, norm)
    probes = [row["prompt"] + row["chosen"] for row in kit_pairs["test"].select(range(6))]
    return {"dir": out, "adapter": adapter_dir, "tokenizer": tokenizer, "before": before, "after": after,
            "probes": probes, "norm": norm, "merged": merged, "in_memory": in_memory}


def test_merged_fp32_scores_equal_base_plus_adapter(export):
    assert compare_scores(export["before"], export["after"])["max_abs_diff"] <= 1e-4
    assert not any("lora" in name for name, _ in export["merged"].named_parameters())


def test_shard_merge_equals_peft_merge_and_unload_weight_for_weight(export):
    streamed, reference = export["merged"].state_dict(), export["in_memory"].state_dict()
    assert set(streamed) == set(reference) and len(streamed) > 30
    worst = max((streamed[k] - reference[k]).abs().max().item() for k in streamed)
    assert worst <= 1e-6, worst
    index = json.loads((export["dir"] / INDEX).read_text())
    assert index["weight_map"]["score.weight"] == HEAD_SHARD and "lm_head.weight" not in index["weight_map"]


def test_16bit_shard_merge_verifies_within_its_relative_tolerance(export, tiny_rm_base, tmp_path):
    """Notebook 03's exercise (MERGE_DTYPE = "bfloat16"): the fp32-trained head is rounded once and still verifies."""
    out = merge_adapter_by_shard(tiny_rm_base, export["adapter"], tmp_path / "bf16", torch.bfloat16,
                                 export["tokenizer"].pad_token_id)
    export["tokenizer"].save_pretrained(out)
    report = verify_reward_model(out, export["probes"], adapter_dir=export["adapter"], required=MODEL_FILES)
    reference = score_conversations(export["merged"], export["tokenizer"], export["probes"])
    diff = np.abs(np.array(report["probe_scores"]) - reference).max()
    assert 0 < diff <= allowed_diff(reference, torch.bfloat16), diff


def test_shard_merge_refuses_an_adapter_for_another_base(export, tmp_path):
    from helpers.tiny import build_tiny_model

    build_tiny_model("llama3", tmp_path / "other", seed=1, layers=2)  # 2 layers: adapter weights for 4
    with pytest.raises(Exception, match="adapts weights the base .* does not have"):
        merge_adapter_by_shard(tmp_path / "other", export["adapter"], tmp_path / "out", torch.float32, 0)


def _adapter_with(adapter_dir, out_dir, change):
    """A copy of an adapter whose tensors `change` rewrote."""
    out_dir = shutil.copytree(adapter_dir, out_dir)
    path = out_dir / "adapter_model.safetensors"
    with safe_open(str(path), "pt") as f:
        tensors = change({k: f.get_tensor(k) for k in f.keys()})
    save_file(tensors, str(path), metadata={"format": "pt"})
    return out_dir


def _wider_head(tensors):
    return {k: torch.cat([v, torch.zeros(1, 8)], dim=1) if ".score." in k else v for k, v in tensors.items()}


def test_shard_merge_refuses_an_adapter_for_a_base_of_another_width(export, tmp_path):
    from helpers.env import KitError
    from helpers.tiny import build_tiny_model

    build_tiny_model("llama3", tmp_path / "narrow", seed=1, hidden=64)  # same layer names, other shapes
    with pytest.raises(KitError, match=r"does not fit the base .*narrow.*: model.layers.0.mlp.down_proj.weight "
                                       r"is \[64, 192\] in the base, the adapter's update is \[128, 384\].*Fix: "
                                       r"merge it into the base it was trained on \(.*base_model_name_or_path"):
        merge_adapter_by_shard(tmp_path / "narrow", export["adapter"], tmp_path / "out", torch.float32, 0)
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_shard_merge_refuses_a_head_of_the_wrong_width(export, tiny_rm_base, tmp_path):
    from helpers.env import KitError

    wide = _adapter_with(export["adapter"], tmp_path / "wide_head", _wider_head)
    with pytest.raises(KitError, match=r"score.weight is \[1, 136\] in the adapter .*hidden_size 128.*\[1, 128\]"):
        merge_adapter_by_shard(tiny_rm_base, wide, tmp_path / "out", torch.float32, 0)


def test_verifier_reports_a_head_of_the_wrong_width_against_its_adapter(broken, export, tmp_path):
    """A folder merged before the check above: the verifier names the shapes instead of raising a RuntimeError."""
    wide = _adapter_with(export["adapter"], tmp_path / "wide_head", _wider_head)
    _rewrite_weights(broken, _wider_head)
    message = _failure(broken, export["probes"], "head", adapter_dir=wide)
    assert "[1, 136]" in message and "hidden_size 128" in message and "merge" in message


def test_merged_model_is_rebuilt_in_a_fresh_runtime_from_what_drive_kept(export, tiny_rm_base, tmp_path, monkeypatch):
    """Colab: notebook 04 starts on an empty local disk; the adapter and 03's metrics on Drive rebuild rm_merged."""
    import helpers.merge_shards as shards

    run_dir = tmp_path / "drive_run"
    shutil.copytree(export["adapter"], run_dir / "rm_adapter")
    (run_dir / "metrics").mkdir()
    (run_dir / "metrics" / "03_merge_value_head.json").write_text(
        json.dumps({"merge_dtype": "float32", "normalization": export["norm"]}))
    monkeypatch.setattr(shards, "large_files_dir", lambda _: tmp_path / "local_disk")
    profile = get_profile("tiny", rm_base=str(tiny_rm_base))
    rebuilt = ensure_merged_model(run_dir, profile)
    assert rebuilt == tmp_path / "local_disk" / "rm_merged"
    report = verify_reward_model(rebuilt, export["probes"], adapter_dir=run_dir / "rm_adapter",
                                 required=MODEL_FILES)
    np.testing.assert_allclose(report["probe_scores"], score_conversations(export["merged"], export["tokenizer"],
                                                                           export["probes"]), atol=1e-5)
    assert json.loads((rebuilt / "config.json").read_text())["mean"] == pytest.approx(export["norm"]["mean"])
    _assert_read_alike_by_transformers_4_and_5_and_vllm(rebuilt)
    assert json.loads((rebuilt / "reward_head.json").read_text())["adapter_source"] == "rm_adapter"  # on Drive
    assert ensure_merged_model(run_dir, profile) == rebuilt  # present now: not rebuilt again


def _assert_read_alike_by_transformers_4_and_5_and_vllm(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == 500000.0  # 4.x: 10000 without it
    assert config["rope_scaling"] is None and config["torch_dtype"] == config["dtype"]
    assert config["problem_type"] == "regression"  # vLLM: no sigmoid on the one label
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_exports_carry_the_keys_transformers_4_and_vllm_read(export):
    """Both folders; transformers 5 reads them as before (same ids, same rope); the manifest names every consumer."""
    from transformers import AutoConfig

    for folder in (export["dir"], export["dir"] / "llamafactory"):
        _assert_read_alike_by_transformers_4_and_5_and_vllm(folder)
        assert AutoConfig.from_pretrained(folder).rope_parameters["rope_theta"] == 500000.0
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert tokenizer.apply_chat_template(export["probes"][0]) == \
            export["tokenizer"].apply_chat_template(export["probes"][0])
    manifest = json.loads((export["dir"] / "reward_head.json").read_text())
    assert set(manifest["exports"]) == {"transformers", "vllm", "trl", "openrlhf", "llamafactory"}
    assert "PR #1343" in manifest["exports"]["openrlhf"]["note"]


def test_as_trained_reload_reproduces_the_trainers_scores_bit_for_bit(tiny_rm_base, adapter, kit_pairs):
    adapter_dir, trainer_scores = adapter
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    model = load_as_trained(tiny_rm_base, adapter_dir, "8bit", torch.bfloat16, tokenizer.pad_token_id)
    again = score_pairs(model, tokenizer, kit_pairs["test"].select(range(N)))
    assert compare_scores(trainer_scores, again)["max_abs_diff"] == 0.0


def test_8bit_vs_merged_drift_is_small_but_real(tiny_rm_base, adapter, export, kit_pairs):
    adapter_dir, trainer_scores = adapter
    merged = {side: export["after"][side][:N] for side in ("chosen", "rejected")}
    drift = compare_scores(trainer_scores, merged)
    assert 0 < drift["max_abs_diff"] < 1.0  # int8 weights are not the fp32 ones
    assert drift["agreement"] >= 0.9 and drift["spearman"] >= 0.98, drift


def test_good_export_passes_every_check(export):
    report = verify_reward_model(export["dir"], export["probes"], adapter_dir=export["adapter"])
    assert report["ok"]
    assert set(report["checks"]) == {"files", "loading", "tokenizer", "head", "pad", "probes", "manifest"}
    assert report["missing_keys"] == [] and report["unexpected_keys"] == []
    assert report["head_shape"] == [1, 128] and report["pad_token_id"] == export["tokenizer"].pad_token_id
    direct = score_conversations(export["merged"], export["tokenizer"], export["probes"])
    np.testing.assert_allclose(report["probe_scores"], direct, atol=1e-5)


def test_config_carries_openrlhf_keys_and_manifest_describes_the_head(export):
    config = json.loads((export["dir"] / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    assert config["value_head_prefix"] == "score" and config["mean"] == pytest.approx(export["norm"]["mean"])
    assert config["std"] > 0 and config["pad_token_id"] == export["tokenizer"].pad_token_id
    manifest = json.loads((export["dir"] / "reward_head.json").read_text())
    assert manifest["head"] == {"key": "score.weight", "shape": [1, 128], "bias": False}
    assert manifest["pad_token_id"] == config["pad_token_id"] and len(manifest["chat_template_sha256"]) == 64
    assert manifest["dtype"] == "float32" and manifest["adapter_source"] == export["adapter"].name  # both in basetemp


def test_manifest_and_llamafactory_yaml_carry_no_machine_paths(export, tiny_rm_base, tmp_path):
    """A run folder copied or uploaded elsewhere must not name this machine's folders; readers still find things."""
    run = tmp_path / "run"
    shutil.copytree(export["adapter"], run / "rm_adapter")
    shutil.copytree(tiny_rm_base, run / "models" / "tiny-llama3")
    merged = shutil.copytree(export["dir"], run / "rm_merged", ignore=shutil.ignore_patterns("llamafactory"))
    manifest = write_reward_head_manifest(merged, export["tokenizer"], run / "models" / "tiny-llama3",
                                          run / "rm_adapter", export["norm"], run_dir=run)
    assert (manifest["adapter_source"], manifest["base_model"]) == ("rm_adapter", "models/tiny-llama3")
    assert (run / manifest["adapter_source"] / "adapter_config.json").exists()
    elsewhere = write_reward_head_manifest(merged, export["tokenizer"], "meta-llama/Meta-Llama-3-8B",
                                           tmp_path / "my_adapter", export["norm"], run_dir=run)
    assert (elsewhere["base_model"], elsewhere["adapter_source"]) == ("meta-llama/Meta-Llama-3-8B", "my_adapter")
    assert "relative to the run folder" in elsewhere["paths"]
    lf = export_llamafactory(merged, export["tokenizer"], merged / "llamafactory", base_path=tiny_rm_base)
    for text in ((merged / "reward_head.json").read_text(), (lf / "llamafactory_ppo.yaml").read_text()):
        assert str(tmp_path) not in text and "/tmp" not in text, text
    assert "reward_model: rm_merged/llamafactory" in (lf / "llamafactory_ppo.yaml").read_text()


def test_llamafactory_layout_reproduces_the_scores(export, kit_pairs):
    lf = export["dir"] / "llamafactory"
    config = json.loads((lf / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]  # normal for this layout
    with safe_open(str(lf / VALUE_HEAD_FILE), "pt") as f:
        head = {k: f.get_tensor(k) for k in f.keys()}
    shapes = {k: list(v.shape) for k, v in head.items()}
    assert shapes == {"v_head.summary.weight": [1, 128], "v_head.summary.bias": [1]}
    assert torch.equal(head["v_head.summary.bias"], torch.zeros(1))
    assert "reward_model_type: full" in (lf / "llamafactory_ppo.yaml").read_text()
    conversations = [row["prompt"] + row["chosen"] for row in kit_pairs["test"].select(range(N))]
    lf_scores = llamafactory_scores(lf, export["tokenizer"], conversations)
    np.testing.assert_allclose(lf_scores, export["after"]["chosen"][:N], atol=1e-4)


# SmolLM2-135M-Instruct's own chat template (the smol profile's): a default system message without a full stop
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_llamafactory_template_follows_the_chat_template(export, tiny_rm_base, tmp_path):
    """LLaMA 3's template -> `llama3` (tiny's YAML as before); SmolLM2's -> `smollm2` with SmolLM2's own default
    system message, since LLaMA-Factory's `smollm2` template ends it with a full stop; an unknown one -> a
    placeholder."""
    import yaml

    lf = export["dir"] / "llamafactory"
    tiny_yaml = yaml.safe_load((lf / "llamafactory_ppo.yaml").read_text())
    assert tiny_yaml["template"] == "llama3" and "default_system" not in tiny_yaml
    manifest = json.loads((export["dir"] / "reward_head.json").read_text())["exports"]["llamafactory"]
    assert manifest["template"] == "llama3" and manifest["default_system"] is None and "strip" in manifest["note"]

    smol_like = copy.deepcopy(export["tokenizer"])
    smol_like.chat_template = SMOLLM2_CHAT_TEMPLATE
    own = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert default_system_message(smol_like) == own and default_system_message(export["tokenizer"]) == ""
    assert llamafactory_template(smol_like)["template"] == "smollm2"
    assert llamafactory_template(smol_like)["default_system"] == own  # LLaMA-Factory's: the same + "."
    out = export_llamafactory(export["dir"], smol_like, tmp_path / "smol_lf", base_path=tiny_rm_base)
    smol_yaml = yaml.safe_load((out / "llamafactory_ppo.yaml").read_text())
    assert (smol_yaml["template"], smol_yaml["default_system"]) == ("smollm2", own)

    plain_chatml = copy.deepcopy(export["tokenizer"])
    plain_chatml.chat_template = CHATML_CHAT_TEMPLATE
    settings = llamafactory_template(plain_chatml)
    assert settings["template"] is None and settings["default_system"] is None
    out = export_llamafactory(export["dir"], plain_chatml, tmp_path / "chatml_lf", base_path=tiny_rm_base)
    assert yaml.safe_load((out / "llamafactory_ppo.yaml").read_text())["template"] == "YOUR_TEMPLATE"


def test_fresh_process_with_only_transformers_gives_the_same_scores(export):
    # `python -c` importing only torch and transformers; it fails if any `helpers` module got imported
    report = verify_reward_model(export["dir"], export["probes"])
    fresh = fresh_process_scores(export["dir"], export["probes"])
    np.testing.assert_allclose(fresh, report["probe_scores"], atol=1e-4)


@pytest.fixture
def broken(export, tmp_path):
    """A copy of the good export to break in one way."""
    return shutil.copytree(export["dir"], tmp_path / "rm_merged")


def _rewrite_weights(folder, change):
    """Change the head shard (where the shard merge puts score.weight) and keep the index in step."""
    path = folder / HEAD_SHARD
    with safe_open(str(path), "pt") as f:
        tensors = change({k: f.get_tensor(k) for k in f.keys()})
    save_file(tensors, str(path), metadata={"format": "pt"})
    index = json.loads((folder / INDEX).read_text())
    index["weight_map"] = {**{k: v for k, v in index["weight_map"].items() if v != HEAD_SHARD},
                           **dict.fromkeys(tensors, HEAD_SHARD)}
    (folder / INDEX).write_text(json.dumps(index))


def _edit_config(folder, **values):
    config = json.loads((folder / "config.json").read_text())
    config.update(values)
    (folder / "config.json").write_text(json.dumps(config))


def _failure(folder, probes, check, adapter_dir=None, **kwargs):
    report = verify_reward_model(folder, probes, adapter_dir=adapter_dir, strict=False, **kwargs)
    assert not report["ok"]
    with pytest.raises(RewardModelError, match=f"- {check}:"):
        verify_reward_model(folder, probes, adapter_dir=adapter_dir, **kwargs)
    return report["checks"][check]


def test_missing_value_head_file(broken, export):
    (broken / "llamafactory" / VALUE_HEAD_FILE).unlink()
    message = _failure(broken, export["probes"], "files")
    assert "llamafactory/value_head.safetensors" in message and "export_llamafactory" in message


def test_head_missing_from_the_checkpoint_is_seed_003(broken, export):
    _rewrite_weights(broken, lambda t: {k: v for k, v in t.items() if k != "score.weight"})
    message = _failure(broken, export["probes"], "head")
    assert "not in the checkpoint" in message and "newly initialized" in message and 'task_type="SEQ_CLS"' in message
    assert verify_reward_model(broken, export["probes"], strict=False)["missing_keys"] == ["score.weight"]


def test_random_head_differs_from_the_adapters_head(broken, export):
    torch.manual_seed(0)
    _rewrite_weights(broken, lambda t: {**t, "score.weight": torch.randn_like(t["score.weight"]) * 0.02})
    message = _failure(broken, export["probes"], "head", adapter_dir=export["adapter"])
    assert "differs from the head saved in" in message and "merge_and_unload" in message


def test_adapter_trained_without_seq_cls_is_caught(tiny_rm_base, export, tmp_path):
    headless = strip_reward_head(export["adapter"], tmp_path / "adapter_no_head")
    assert adapter_head(headless) is None and adapter_head(export["adapter"]).shape == (1, 128)
    merge_adapter_by_shard(tiny_rm_base, headless, tmp_path / "merged", torch.float32, export["tokenizer"].pad_token_id)
    export["tokenizer"].save_pretrained(tmp_path / "merged")
    report = verify_reward_model(tmp_path / "merged", export["probes"], strict=False, required=MODEL_FILES)
    assert report["ok"] and report["missing_keys"] == []  # a saved random head loads without a warning ...
    message = _failure(tmp_path / "merged", export["probes"], "head", headless, required=MODEL_FILES)
    assert "holds no score head" in message and "newly initialized" in message  # ... only its adapter gives it away


def test_wrong_head_shape(broken, export):
    _rewrite_weights(broken, lambda t: {**t, "score.weight": torch.cat([t["score.weight"]] * 2)})
    _edit_config(broken, num_labels=2, id2label={"0": "LABEL_0", "1": "LABEL_1"},
                 label2id={"LABEL_0": 0, "LABEL_1": 1})
    message = _failure(broken, export["probes"], "head")
    assert "shape [2, 128]" in message and "[1, 128]" in message and "num_labels=1" in message


def test_head_shape_that_does_not_match_the_config(broken, export):
    _rewrite_weights(broken, lambda t: {**t, "score.weight": torch.cat([t["score.weight"]] * 2)})
    message = _failure(broken, export["probes"], "loading")
    assert "wrong shape" in message and "checkpoint [2, 128], model [1, 128]" in message


def test_pad_id_unset(broken, export):
    _edit_config(broken, pad_token_id=None)
    message = _failure(broken, export["probes"], "pad")
    assert "no pad_token_id" in message and "tokenizer.pad_token_id" in message


def test_pad_id_equal_to_eos(broken, export):
    config = json.loads((broken / "config.json").read_text())
    _edit_config(broken, pad_token_id=config["eos_token_id"])
    assert "EOS" in _failure(broken, export["probes"], "pad")


def test_missing_tokenizer(broken, export):
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (broken / name).unlink()
    message = _failure(broken, export["probes"], "tokenizer")
    assert "no tokenizer in" in message and "tokenizer.save_pretrained" in message
    assert "tokenizer.json" in verify_reward_model(broken, export["probes"], strict=False)["checks"]["files"]


def test_causal_lm_folder_is_not_a_reward_model(export):
    message = _failure(export["dir"] / "llamafactory", export["probes"], "head", required=MODEL_FILES)
    assert "newly initialized" in message


def test_small_helpers():
    assert merge_dtype("cpu") == torch.float32
    scores = {"chosen": np.array([4.0]), "rejected": np.array([-0.5])}
    assert allowed_diff(scores, torch.bfloat16) == pytest.approx(0.08)
    assert allowed_diff(np.array([0.1]), torch.float32) == pytest.approx(1e-5)  # scale at least 1
    a = {"chosen": np.array([1.0, 2.0, 0.0]), "rejected": np.array([0.0, 3.0, -1.0])}
    b = {"chosen": np.array([1.0, 2.5, -2.0]), "rejected": np.array([0.0, 3.0, -1.0])}
    assert compare_scores(a, b) == pytest.approx({"max_abs_diff": 2.0, "agreement": 2 / 3,
                                                  "spearman": compare_scores(a, b)["spearman"]})
    assert fit_normalization(a) == pytest.approx({"mean": 0.8333333, "std": np.std([1, 2, 0, 0, 3, -1])})
    with pytest.raises(ValueError, match="Cannot fit a normalisation"):
        fit_normalization({"chosen": np.ones(3), "rejected": np.ones(3)})
    with pytest.raises(ValueError, match="quantization='int8'.*'8bit', '4bit' or None"):
        load_as_trained("unused", "unused", "int8", torch.bfloat16, 0)
