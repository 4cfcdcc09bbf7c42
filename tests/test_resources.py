"""helpers.resources: the computed resource model of the GPU profile (meta-device models: nothing downloaded)."""

import importlib.util
import math

import pytest

from helpers import resources
from helpers.env import KIT_ROOT
from helpers.profiles import get_profile

NOTEBOOKS = ["00_setup", "01_prepare_data", "02_train_reward_model", "03_merge_value_head", "04_score_responses",
             "05_kto_unpaired", "06_rl_with_reward_model"]
LLAMA3_70B = {  # meta-llama/Meta-Llama-3-70B config.json; 30 shards of ~4.7 GB
    "config": {"hidden_size": 8192, "num_hidden_layers": 80, "intermediate_size": 28672, "num_attention_heads": 64,
               "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False},
    "safetensors_gb": 141.1, "largest_shard_gb": 5.0, "tokenizer_gb": 0.009}


@pytest.fixture(scope="module")
def t4():
    return resources.estimate_resources("llama3-8b", "T4")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_notebook_of_llama3_8b_fits_a_free_colab_t4_with_a_10_percent_margin(t4, notebook):
    estimate = t4[notebook]
    assert estimate["vram_gib"] <= 0.9 * 15.0
    assert estimate["ram_gb"] <= 0.9 * 12.7
    assert estimate["local_disk_gb"] <= 0.9 * 78
    assert resources.fits(estimate, "T4", margin=0.9) == []


@pytest.mark.parametrize("hardware", ["L4", "A100_40GB"])
def test_every_notebook_fits_an_l4_and_an_a100_as_the_readme_says(hardware):
    estimates = resources.estimate_resources("llama3-8b", hardware)
    assert {name: resources.fits(e, hardware) for name, e in estimates.items()} == dict.fromkeys(NOTEBOOKS, [])


def test_the_whole_course_keeps_under_5_gb_on_drive(t4):
    drive = [t4[n]["drive_gb"] for n in NOTEBOOKS]
    assert drive == sorted(drive), "Drive is cumulative: the run folder only grows"
    assert drive[-1] <= 5.0
    assert "rm_checkpoints_x2 (adapter, AdamW states, tokenizer)" in t4["05_kto_unpaired"]["components"]["drive_gb"]


def test_the_known_peaks_are_where_the_course_decisions_put_them(t4):
    train = t4["02_train_reward_model"]["components"]["vram_gib"]
    assert train["embeddings_norms_head_fp32"] == pytest.approx(128256 * 4096 * 4 / 2**30, abs=0.01)
    assert train["weights_8bit"] == pytest.approx(6.5, abs=0.02)
    assert t4["03_merge_value_head"]["max_memory_gpu_gib"] is not None  # the default placement leaves no room
    assert t4["03_merge_value_head"]["transformers_default_vram_gib"] > t4["03_merge_value_head"]["vram_gib"]
    kto = t4["05_kto_unpaired"]["phases"]["vram_gib"]
    assert max(kto, key=kto.get).startswith("held-out implicit rewards")  # full logits, not the fused KTO step


def test_parameter_counts_on_the_meta_model_match_the_published_totals():
    llama8b = resources.count_parameters("meta-llama/Meta-Llama-3-8B", "causal_lm")
    assert llama8b["total"] == 8_030_261_248 and round(llama8b["total"] / 1e9, 2) == 8.03
    llama3b = resources.count_parameters("meta-llama/Llama-3.2-3B-Instruct", "causal_lm")
    assert llama3b["total"] == 3_212_749_824 and round(llama3b["total"] / 1e9, 2) == 3.21  # tied: counted once
    rm = resources.count_parameters("meta-llama/Meta-Llama-3-8B", "score", 8, ("q_proj", "v_proj"))
    assert rm["total"] == llama8b["total"] - 128256 * 4096 + 4096  # lm_head replaced by score Linear(4096, 1)
    assert rm["quantized"] == llama8b["quantized"] and rm["quantized"] + rm["other"] == rm["total"]
    assert rm["lora"] == 32 * 8 * ((4096 + 4096) + (4096 + 1024))  # q_proj 4096->4096, v_proj 4096->1024 (GQA)
    assert rm["largest_linear"] == 4096 * 14336 and rm["head"] == 4096


@pytest.mark.parametrize("overrides, notebook, resource", [
    ({"quantization": None}, "02_train_reward_model", "vram_gib"),  # bf16/fp16 base: 14 GiB of weights alone
    ({"gradient_checkpointing": False, "max_length": 4096}, "02_train_reward_model", "vram_gib"),
    ({"max_length": 4096}, "05_kto_unpaired", "vram_gib"),  # held-out logits 8 x 4096 x 128256 in fp32
])
def test_the_model_reports_what_does_not_fit_a_t4(overrides, notebook, resource):
    estimate = resources.estimate_resources(get_profile("llama3-8b", **overrides), "T4")[notebook]
    problems = resources.fits(estimate, "T4")
    assert any(p.startswith(resource) for p in problems), problems
    assert "largest part" in problems[0] and estimate["peak_phase"][resource] in problems[0]


def test_a_bf16_base_does_not_fit_a_t4_but_fits_an_a100():
    profile = get_profile("llama3-8b", quantization=None)
    on_t4, on_a100 = (resources.estimate_resources(profile, hw)["02_train_reward_model"] for hw in ("T4", "A100_40GB"))
    assert resources.fits(on_t4, "T4") and resources.fits(on_a100, "A100_40GB") == []


def test_a_70b_reward_model_fits_neither_the_t4_gpu_nor_its_disk(monkeypatch):
    monkeypatch.setitem(resources.MODELS, "meta-llama/Meta-Llama-3-70B", LLAMA3_70B)
    assert resources.count_parameters("meta-llama/Meta-Llama-3-70B")["total"] == pytest.approx(70.55e9, rel=1e-3)
    estimate = resources.estimate_resources(get_profile("llama3-8b", rm_base="meta-llama/Meta-Llama-3-70B"), "T4")
    problems = resources.fits(estimate["02_train_reward_model"], "T4")
    assert [p.split()[0] for p in problems] == ["vram_gib", "local_disk_gb"]


def test_an_unknown_model_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="No embedded config for 'tiny-llama3'.*helpers.resources.MODELS"):
        resources.estimate_resources("tiny", "T4")


def test_checkpoint_steps_fall_within_one_and_half_the_training():
    profile = get_profile("llama3-8b")
    total = math.ceil(256 / (profile.per_device_train_batch_size * profile.gradient_accumulation_steps)) * 3
    steps = resources.checkpoint_steps(profile)
    assert 1 <= steps < total and steps <= total // 2
    assert resources.checkpoint_steps(profile, minutes=10_000) == total // 2
    assert resources.checkpoint_steps(profile, minutes=0.01) == 1
    assert len(resources.kit_sequence_tokens()) == 2 * 256  # the kit's 256 training pairs, two sequences each


def test_step_time_grows_with_the_tokens_and_the_recompute():
    profile = get_profile("llama3-8b")
    kit, worst = resources.t4_step_seconds(profile), resources.t4_step_seconds(profile, profile.max_length)
    assert 0 < kit < worst
    no_recompute = resources.t4_step_seconds(get_profile("llama3-8b", gradient_checkpointing=False), profile.max_length)
    assert no_recompute < worst


def test_the_docs_and_the_readme_show_what_the_model_computes():
    spec = importlib.util.spec_from_file_location("resource_model", KIT_ROOT / "benchmarks" / "resource_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.stale(module.compute()) == [], "run: python benchmarks/resource_model.py"


def test_grpo_fits_a_t4_with_two_completions_per_step_not_four(t4):
    """Notebook 06 keeps the 8B reward model in 8-bit beside the 8-bit policy: the profile's 2 completions per step
    fit; 4 do not, and the message names the training step."""
    assert t4["06_rl_with_reward_model"]["peak_phase"]["vram_gib"].startswith("GRPO training step")
    assert resources.fits(t4["06_rl_with_reward_model"]) == []
    wider = resources.estimate_resources(get_profile("llama3-8b", grpo_batch_size=4), "T4")["06_rl_with_reward_model"]
    assert resources.fits(wider) and "GRPO training step" in resources.fits(wider)[0]
