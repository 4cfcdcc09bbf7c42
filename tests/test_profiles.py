import dataclasses

import pytest

from helpers.profiles import PROFILES, SMOL_MODEL, TINY_POLICY, TINY_RM_BASE, get_profile


def test_unknown_profile_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Unknown profile 'llama-3-8b'\. Valid profiles: 'tiny', 'smol', 'llama3-8b'"):
        get_profile("llama-3-8b")


def test_llama3_profile_carries_the_seed_recipe():
    p = get_profile("llama3-8b")
    assert p.rm_base == "meta-llama/Meta-Llama-3-8B" and p.quantization == "8bit"
    assert (p.lora_r, p.lora_alpha, p.lora_dropout) == (8, 16, 0.0)
    assert (p.learning_rate, p.per_device_train_batch_size, p.gradient_accumulation_steps) == (1e-5, 2, 4)
    assert (p.max_length, p.num_train_epochs) == (1024, 3)
    assert p.min_gpu_memory_gib > 0


def test_tiny_profile_is_offline_and_cpu():
    p = get_profile("tiny")
    assert p.is_tiny and p.min_gpu_memory_gib == 0 and p.quantization == "8bit"
    assert p.model_path("rm_base", "/r").endswith(f"models/{TINY_RM_BASE}")
    assert p.model_path("policy_base", "/r").endswith(f"models/{TINY_POLICY}")
    assert get_profile("llama3-8b").model_path("rm_base", "/r") == "meta-llama/Meta-Llama-3-8B"


def test_smol_profile_is_offline_one_real_model_for_both_roles():
    p = get_profile("smol")
    assert p.is_local and not p.is_tiny and p.hub_models == () and p.min_gpu_memory_gib == 0
    assert p.quantization == "8bit" and p.gradient_checkpointing  # the 8B recipe's code path, sized for a laptop
    assert p.model_path("rm_base", "/r") == p.model_path("policy_base", "/r")
    assert p.model_path("rm_base", "/r").endswith(f"models/{SMOL_MODEL}")
    assert not get_profile("llama3-8b").is_local and get_profile("tiny").is_local


def test_overrides_and_unknown_fields():
    assert get_profile("tiny", max_length=512).max_length == 512
    assert PROFILES["tiny"].max_length != 512  # the registry is not mutated
    with pytest.raises(ValueError, match="Unknown profile field"):
        get_profile("tiny", max_len=512)


@pytest.mark.parametrize("name", list(PROFILES))
def test_profiles_print_and_round_trip(name):
    p = get_profile(name)
    assert name in repr(p)
    assert dataclasses.replace(p).to_dict() == p.to_dict()


def test_quantization_must_be_known():
    assert get_profile("tiny", quantization="4bit").quantization == "4bit"
    assert get_profile("tiny", quantization=None).quantization is None
    with pytest.raises(ValueError, match=r"quantization='3bit' is not supported; use one of \('8bit', '4bit', None\)"):
        get_profile("tiny", quantization="3bit")


def test_access_check_names_every_gated_model_and_its_licence_page(monkeypatch):
    """Meta gates each repository separately: one error must list all that are missing, not only the first."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    from helpers.env import KitError
    from helpers.profiles import check_profile_access

    class Gated(GatedRepoError):
        def __init__(self, message):  # the hub's own error needs an HTTP response; the type is what matters
            Exception.__init__(self, message)

    def gated(self, model_id, token=None):
        raise Gated(f"gated: {model_id}")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", gated)
    profile = get_profile("llama3-8b")
    assert profile.hub_models == ("meta-llama/Meta-Llama-3-8B", "meta-llama/Llama-3.2-3B-Instruct")
    with pytest.raises(KitError) as err:
        check_profile_access(profile, token="x")
    for model_id in profile.hub_models:
        assert f"https://huggingface.co/{model_id}" in str(err.value)
    assert get_profile("tiny").hub_models == () and check_profile_access(get_profile("tiny")) == {}
