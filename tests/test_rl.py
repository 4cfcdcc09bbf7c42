"""helpers.rl: GRPO's advantage as TRL computes it, the held-out judge, the length penalty and the knob verdicts."""

import json

import numpy as np
import pytest
import torch
from test_score import rm_dir  # noqa: F401  (the module-scoped reward-model folder fixture)

from helpers.rl import (
    check_knob_runs,
    group_advantages,
    held_out_set,
    kl_over_steps,
    knob_effects,
    length_penalty,
    reference_states,
    train_judge,
    unique_prompts,
    word_f1,
)


def test_group_advantages_match_trls_formula():
    """TRL 1.16 grpo_trainer.py:2763-2787 (scale_rewards="group"), written out in torch as it is there."""
    rewards = torch.tensor([0.3, -1.2, 2.0, 0.5, 1.0, 1.0, 1.0, 1.5])
    grouped = rewards.view(-1, 4)
    mean = grouped.mean(dim=1).repeat_interleave(4)
    std = grouped.std(dim=1).repeat_interleave(4)
    expected = ((rewards - mean) / (std + 1e-4)).numpy()
    np.testing.assert_allclose(group_advantages(rewards.numpy(), 4), expected, rtol=1e-5)
    assert group_advantages([1.0, 1.0, 1.0, 1.0], 4).tolist() == [0.0] * 4  # a group of equals teaches nothing


def test_word_f1_and_length_penalty():
    assert word_f1("boil it nine minutes", "Boil it for nine minutes") == pytest.approx(2 * 4 / 9)
    assert word_f1("user user", "boil the egg") == 0.0
    penalty = length_penalty(0.5)
    completions = [[{"role": "assistant", "content": "one two three"}], [{"role": "assistant", "content": ""}]]
    assert penalty(completions=completions, prompts=[[], []]) == [-1.5, 0.0]
    assert penalty.__name__ == "length_penalty"  # TRL logs it as rewards/length_penalty/mean


def test_prompts_are_distinct_and_references_are_the_chosen_answers(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": f"good {i}"}],
             "rejected": [{"role": "assistant", "content": "bad"}]} for i, q in enumerate(["a", "b", "a", "c"])]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [p[0]["content"] for p in unique_prompts(path)] == ["a", "b", "c"]
    prompts, references = held_out_set(path, 2)
    assert [p[0]["content"] for p in prompts] == ["a", "b"] and references == ["good 0", "good 1"]


def test_kl_over_steps_is_nan_when_beta_0_logged_none():
    log = [{"step": s, "kl": 0.1 * s} for s in range(1, 9)] + [{"step": 8, "train_loss": 0.1}]
    assert kl_over_steps(log) == pytest.approx(0.65) and kl_over_steps(log, last=1, upto=4) == pytest.approx(0.4)
    assert np.isnan(kl_over_steps([{"step": 1, "loss": 0.2}]))  # GRPOConfig(beta=0.0): TRL logs no "kl"
    with pytest.raises(ValueError, match="up to step 0"):
        kl_over_steps(log, upto=0)


@pytest.mark.parametrize("bad", [[{"lr": 1e-3}], [{"beta": 0.4, "length_penalty": 0.1}], [{"beta": "big"}], ["beta"]])
def test_knob_runs_are_checked_before_training(bad):
    check_knob_runs([{"beta": 0.4}, {"length_penalty": 0.1}])
    check_knob_runs([])
    with pytest.raises(ValueError, match="each entry changes one knob, one of \\['beta', 'length_penalty'\\]"):
        check_knob_runs(bad)


def test_knob_effects_say_when_a_knob_did_not_move_its_target():
    base = {"kl": 0.2, "rm": [0.0, 1.0], "judge": [1.0], "overlap": [0.1], "words": 10.0}
    runs = [{**base, "knob": {"beta": 0.4}, "kl": 0.1},  # lower KL: moved
            {**base, "knob": {"length_penalty": 0.1}, "words": 12.0}]  # longer: did not move
    beta, length = knob_effects(base, runs)
    assert beta["moved_as_expected"] and beta["delta_kl"] == pytest.approx(-0.1)
    assert not length["moved_as_expected"] and "did NOT" in length["line"] and length["delta_words"] == 2.0


def test_judge_reads_the_reference_and_ranks_unseen_pairs(tiny_rm_base, kit_pairs):
    """Fitted on the test pairs, the judge beats chance on training pairs it never saw, and a trained LoRA
    adapter changes nothing it reads (its layers are switched off while it reads, and back on after)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from helpers.train import prepare_reward_tokenizer

    tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(tiny_rm_base))
    model = AutoModelForCausalLM.from_pretrained(tiny_rm_base, use_safetensors=True)
    rows = lambda split, n: [{k: kit_pairs[split][i][k] for k in ("prompt", "chosen", "rejected")}  # noqa: E731
                             for i in range(n)]
    judge = train_judge(model, tokenizer, rows("test", 48))
    assert judge.accuracy(rows("train", 40)) > 0.55  # the un-warmed tiny base: weak features, still above chance
    conversations = [r["prompt"] + r["chosen"] for r in rows("train", 4)]
    plain = reference_states(model, tokenizer, conversations)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():
        changed = peft_model(**tokenizer(["hello there"], return_tensors="pt")).logits
    np.testing.assert_allclose(reference_states(peft_model, tokenizer, conversations), plain, atol=1e-5)
    with torch.no_grad():  # the adapter is active again afterwards
        np.testing.assert_allclose(peft_model(**tokenizer(["hello there"], return_tensors="pt")).logits, changed)
    with peft_model.disable_adapter(), torch.no_grad():
        assert not torch.allclose(peft_model(**tokenizer(["hello there"], return_tensors="pt")).logits, changed)
    with pytest.raises(ValueError, match="at least 10 pairs"):
        train_judge(model, tokenizer, rows("test", 3))


def _grpo_trainer_scoring_with(reward_model, tokenizer, policy_dir, tmp_path, bf16: bool):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    config = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
                        max_completion_length=8, report_to="none", use_cpu=True, bf16=bf16, logging_steps=1)
    return GRPOTrainer(model=str(policy_dir), reward_funcs=[reward_model], reward_processing_classes=[tokenizer],
                       args=config, train_dataset=Dataset.from_list([{"prompt": [{"role": "user", "content": "hi"}]}]))


@pytest.mark.parametrize("bf16", [True, False])
def test_grpo_rewards_equal_the_scorers_from_step_0_and_the_check_fails_when_they_do_not(
        rm_dir, tiny_rm_base, tmp_path, bf16):  # noqa: F811
    """Notebook 06 on a CPU with bf16: GRPOTrainer(bf16=True) wraps the shared reward model's forward in bf16
    autocast (accelerate 1.15 accelerator.py:1824-1835, called from TRL 1.16 grpo_trainer.py:1214). A scorer built
    with `grpo_autocast` scores that way from step 0, so its step-0 rewards, TRL's and its own later ones agree;
    a plain fp32 scorer's step-0 rewards differ from TRL's bf16 ones, and `compare_rewards` says so."""
    from helpers.score import RewardScorer, _messages, compare_rewards, grpo_autocast

    prompts = [_messages(p, "user") for p in ("Name a prime number.", "什么是人工智能?", "Explain photosynthesis.")]
    answers = ["Seven.", "人工智能是让计算机完成通常需要人类智能的任务的技术。", "Plants turn light into sugar. " * 6]
    autocast = grpo_autocast(bf16=bf16, fp16=False, device="cpu")
    assert autocast == (torch.bfloat16 if bf16 else None)
    scorer = RewardScorer.from_pretrained(rm_dir, device="cpu", autocast=autocast)
    plain = RewardScorer.from_pretrained(rm_dir, device="cpu")  # fp32, as notebook 06 scored step 0 before
    items = list(zip(prompts, answers, strict=True))
    step_0, step_0_fp32 = scorer.score_batch(items), plain.score_batch(items)
    trainer = _grpo_trainer_scoring_with(scorer.model, scorer.tokenizer, tiny_rm_base, tmp_path, bf16)
    grpo = trainer._calculate_rewards([{"prompt": p} for p in prompts], prompts,
                                      [_messages(a, "assistant") for a in answers], [[0]] * 3)[:, 0]
    assert compare_rewards(grpo, step_0, autocast) == 0.0  # the same computation, bit for bit, on a CPU
    np.testing.assert_array_equal(scorer.score_batch(items), step_0)  # later scores too
    if bf16:
        with pytest.raises(ValueError, match="GRPO's reward and RewardScorer's differ by up to"):
            compare_rewards(grpo, step_0_fp32, autocast)
    else:
        assert compare_rewards(grpo, step_0_fp32, None) == 0.0


def test_grpo_trains_the_8bit_lora_policy_with_reentrant_checkpointing(tiny_rm_base, tmp_path):
    """Notebook 06's GRPOConfig on the 8B profile: gradient checkpointing with use_reentrant=True on an 8-bit base
    prepared by `prepare_model_for_kbit_training` (which makes the inputs require grad, as reentrant needs). The tiny
    profile does not checkpoint, so this is where the combination trains: every LoRA B matrix moves."""
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import GRPOConfig, GRPOTrainer

    policy = prepare_model_for_kbit_training(AutoModelForCausalLM.from_pretrained(
        tiny_rm_base, quantization_config=BitsAndBytesConfig(load_in_8bit=True), use_safetensors=True),
        use_gradient_checkpointing=True)
    prompts = ["Name a prime number.", "Hi", "Why is the sky blue?"]  # plain text: this base has no chat template
    config = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, num_generations=4,
                        max_completion_length=8, learning_rate=1e-2, beta=0.04, use_cpu=True, bf16=False,
                        gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True},
                        logging_steps=1, save_strategy="no", report_to="none")
    trainer = GRPOTrainer(model=policy, args=config, processing_class=AutoTokenizer.from_pretrained(tiny_rm_base),
                          reward_funcs=[length_penalty(0.1)], train_dataset=Dataset.from_list([{"prompt": p}
                                                                                              for p in prompts]),
                          peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    lora_b = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    layer = trainer.model.get_base_model().model.layers[0]  # Trainer.train switched checkpointing on, with the kwargs
    assert layer.gradient_checkpointing and layer._gradient_checkpointing_func.keywords == {"use_reentrant": True}
    moved = {n for n, p in trainer.model.named_parameters() if n in lora_b and not torch.equal(p, lora_b[n])}
    assert lora_b and moved == set(lora_b)  # with no input requiring grad, reentrant checkpointing would give none


@pytest.mark.parametrize("changes, words", [
    ({"rm": 0.5, "judge": -0.2, "overlap": 0.0}, "neither judge did: over-optimisation"),
    ({"rm": 0.5, "judge": 0.2, "overlap": -0.1}, "so did the second reward model:"),
    ({"rm": 0.5, "judge": 0.2, "overlap": 0.3}, "so did the second reward model and the overlap"),
    ({"rm": 0.0, "judge": -0.3, "overlap": -0.3}, "did not rise"),
    ({"rm": 0.5, "judge": -0.2, "overlap": 0.02}, "neither judge did"),  # +0.02 spreads on 16 prompts: noise
    ({"rm": 0.08, "judge": -0.2, "overlap": 0.0}, "did not rise"),
])
def test_notebook_06_reads_over_optimisation_from_the_runs_own_lines(changes, words):
    from helpers.rl import read_overoptimisation

    assert words in read_overoptimisation(changes)
