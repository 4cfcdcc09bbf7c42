"""helpers.kto_train: a real KTOTrainer on the tiny 8-bit Qwen2 policy and the kit's own data."""

import dataclasses

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import KTOConfig, KTOTrainer
from trl.data_utils import unpair_preference_dataset

from helpers.env import KIT_ROOT
from helpers.kto import WEIGHT_BAND, kto_class_weights, mix_unpaired, unpair_preferences
from helpers.kto_train import (
    check_kto_setup,
    completion_logps,
    desirable_margin,
    generate_responses,
    implicit_rewards,
    labels_per_batch,
    plot_kto_curves,
    win_rate,
)

BATCH = 8  # the tiny profile's kto_batch_size


@pytest.fixture(scope="module")
def kit_unpaired(kit_pairs):
    """Train and test rows as notebook 01 writes them: unpaired pairs + native rows, mixed for batch 8."""
    from helpers.data import load_unpaired

    native = {s: load_unpaired(KIT_ROOT / "data" / "unpaired.jsonl", on_error="raise", split=s)[0]
              for s in ("train", "test")}
    return {s: mix_unpaired(unpair_preferences(kit_pairs[s]), native[s], BATCH, seed=42)
            for s in ("train", "test")}


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """The tiny Qwen2-style policy (ChatML tokenizer trained on the kit's text), with a short warm-up."""
    from helpers.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny-qwen2"
    build_tiny_model("chatml", path, seed=0, warmup_steps=30)
    return path


def kto_args(tmp_path, **overrides) -> KTOConfig:
    n_d, n_u = overrides.pop("counts", (1, 1))
    weights = dict(zip(("desirable_weight", "undesirable_weight"), kto_class_weights(n_d, n_u), strict=True))
    values = dict(output_dir=str(tmp_path / "kto"), per_device_train_batch_size=BATCH, learning_rate=1e-3,
                  beta=0.1, bf16=True, use_cpu=True, gradient_checkpointing=False, report_to="none",
                  save_strategy="no", logging_steps=2, max_length=256, seed=0, **weights)
    return KTOConfig(**{**values, **overrides})


def counts(dataset) -> tuple[int, int]:
    n_d = sum(dataset["label"])
    return n_d, len(dataset) - n_d


def make_trainer(policy_path, dataset, args) -> KTOTrainer:
    """Notebook 05's set-up: 8-bit base, prepare_model_for_kbit_training, LoRA (CAUSAL_LM) as peft_config."""
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    model = AutoModelForCausalLM.from_pretrained(
        policy_path, quantization_config=BitsAndBytesConfig(load_in_8bit=True), dtype=torch.bfloat16)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    return KTOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      peft_config=lora)


def test_every_batch_of_the_trainers_dataloader_holds_both_labels(tiny_policy, kit_unpaired, tmp_path):
    train = kit_unpaired["train"]
    trainer = make_trainer(tiny_policy, train, kto_args(tmp_path, counts=counts(train)))
    per_batch = labels_per_batch(trainer.get_train_dataloader())
    assert len(per_batch) == -(-len(train) // BATCH)
    assert all(d > 0 and u > 0 for d, u in per_batch), per_batch
    assert sum(d for d, _ in per_batch) == sum(train["label"])  # TRL's preparation lost or added no row


def test_trls_own_unpairing_gives_single_label_batches_in_the_trainer(tiny_policy, kit_pairs, tmp_path):
    """Why the order matters: the same check finds single-label batches in TRL's own unpairing order."""
    rows = unpair_preference_dataset(kit_pairs["train"])
    trainer = make_trainer(tiny_policy, rows, kto_args(tmp_path))
    per_batch = labels_per_batch(trainer.get_train_dataloader())
    assert sum(d == 0 or u == 0 for d, u in per_batch) > len(per_batch) // 2


def test_class_weights_meet_eq8_for_the_kits_imbalance(kit_unpaired, tmp_path):
    n_d, n_u = counts(kit_unpaired["train"])
    assert n_d != n_u  # the kit's data is imbalanced: native rows are mostly undesirable
    lam_d, lam_u = kto_class_weights(n_d, n_u)
    assert WEIGHT_BAND[0] <= lam_d * n_d / (lam_u * n_u) <= WEIGHT_BAND[1]
    # TRL's own (rounded) range check, from KTOTrainer._prepare_dataset: one of the two weights in range
    des_ok = round(n_u * lam_u / n_d, 2) <= lam_d <= round(n_u * lam_u / n_d * 1.33, 2)
    und_ok = round(n_d * lam_d / n_u / 1.33, 2) <= lam_u <= round(n_d * lam_d / n_u, 2)
    assert des_ok or und_ok
    report = check_kto_setup(kto_args(tmp_path, counts=(n_d, n_u)), kit_unpaired["train"])
    assert report["batches_with_both_labels"] == report["batches"] and report["n_desirable"] == n_d


def unpaired(labels) -> Dataset:
    n = len(labels)
    return Dataset.from_dict({"prompt": [[{"role": "user", "content": "q"}]] * n,
                              "completion": [[{"role": "assistant", "content": "a"}]] * n, "label": labels})


@pytest.mark.parametrize(("labels", "overrides", "match"), [
    ([True, False] * 8, {"per_device_train_batch_size": 1},
     r"per_device_train_batch_size=1\).*Set per_device_train_batch_size to 2 or more"),
    ([True] * 16, {}, r"only desirable \(label True\) rows.*unpair_preferences"),
    ([False] * 16, {}, r"only undesirable \(label False\) rows.*Add rows of the other label"),
    ([True, False, False, False] * 4, {},
     r"= 0\.333, outside \[1, 4/3\].*kto_class_weights\(n_D, n_U\) = \(3\.5, 1\.0\)"),
])
def test_bad_setups_fail_before_training_naming_the_fix(tmp_path, labels, overrides, match):
    args = kto_args(tmp_path, **overrides)  # weights 1.0 / 1.0
    with pytest.raises(ValueError, match=match):
        check_kto_setup(args, unpaired(labels))


@pytest.mark.parametrize(("labels", "overrides", "match"), [
    ([True, False] * 8, {"train_sampling_strategy": "random"}, r"strategy='random'.*Keep .*'sequential'"),
    ([True] * 8 + [False] * 8, {}, r"2 of 2 training batches of 8 rows hold a single label.*mix_unpaired"),
])
def test_one_label_batches_warn_with_the_reason_and_training_may_go_on(tmp_path, labels, overrides, match):
    args = kto_args(tmp_path, **overrides)
    with pytest.warns(UserWarning, match=match) as caught:
        checked = check_kto_setup(args, unpaired(labels))
    assert "pushes only one way" in str(caught[0].message) and checked["n_desirable"] == 8


def test_trl_itself_refuses_a_batch_of_one_only_inside_the_trainer(tiny_policy, kit_unpaired, tmp_path):
    args = dataclasses.replace(kto_args(tmp_path), per_device_train_batch_size=1)
    with pytest.raises(ValueError, match="batch size must be > 1"):
        make_trainer(tiny_policy, kit_unpaired["train"].select(range(16)), args)


def test_completion_logps_match_what_the_trainer_computes(tiny_policy, kit_unpaired, tmp_path):
    rows = kit_unpaired["train"].select(range(BATCH))
    trainer = make_trainer(tiny_policy, rows, kto_args(tmp_path))
    batch = next(iter(trainer.get_train_dataloader()))
    trl_logps, _ = trainer.compute_ref_log_probs(trainer.model, batch)
    ours = completion_logps(trainer.model, trainer.processing_class, rows, batch_size=4, max_length=256)
    np.testing.assert_allclose(ours, trl_logps.float().numpy(), rtol=1e-3, atol=0.25)


def test_short_kto_training_raises_the_held_out_margin(tiny_policy, kit_unpaired, tmp_path):
    train, test = kit_unpaired["train"], kit_unpaired["test"].select(range(64))
    trainer = make_trainer(tiny_policy, train, kto_args(tmp_path, counts=counts(train), max_steps=14))
    tokenizer = trainer.processing_class
    before = implicit_rewards(trainer.model, tokenizer, test, beta=0.1)
    assert np.abs(before["rewards"]).max() == 0  # LoRA starts at B = 0: the policy is the reference
    trainer.train()
    after = implicit_rewards(trainer.model, tokenizer, test, beta=0.1)
    np.testing.assert_allclose(after["reference"], before["reference"], atol=1e-3)  # adapters off = the base
    labels = test["label"]
    gain = desirable_margin(after["policy"], labels) - desirable_margin(after["reference"], labels)
    assert gain > 0.5  # nats; 1.15 after these 14 steps on this data and seed (0 before training)
    assert desirable_margin(after["rewards"], test["label"]) == pytest.approx(0.1 * gain, rel=1e-4)
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "kl"} <= logged
    assert len(plot_kto_curves(trainer.state.log_history).axes) == 2


def test_generation_is_left_padded_greedy_and_restores_the_tokenizer(tiny_policy):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    prompts = [[{"role": "user", "content": text}] for text in ("Hi", "What is a reward model, briefly?")]
    batched = generate_responses(model, tokenizer, prompts, max_new_tokens=8, batch_size=2, progress=False)
    one_by_one = [generate_responses(model, tokenizer, [p], max_new_tokens=8, progress=False)[0]
                  for p in prompts]
    assert batched == one_by_one and all(isinstance(a, str) for a in batched)
    assert tokenizer.padding_side == "right"
    tokenizer.pad_token = None  # as Llama-3.2-3B-Instruct's: padding borrows EOS while generating, then none again
    assert generate_responses(model, tokenizer, prompts, max_new_tokens=8, batch_size=2, progress=False) == batched
    assert tokenizer.pad_token is None


def test_win_rate_counts_ties_as_half_and_margin_needs_both_labels():
    assert win_rate([2, 1, 0, 5], [1, 1, 1, 0]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    with pytest.raises(ValueError, match="of equal length, got \\(2,\\) and \\(1,\\)"):
        win_rate([1, 2], [1])
    assert desirable_margin([3.0, 1.0, 2.0], [True, False, False]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="both labels"):
        desirable_margin([1.0, 2.0], [True, True])
