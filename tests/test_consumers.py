"""Consumers that need no venv of their own, scored with their own code: transformers' `pipeline` and TRL's GRPO.

The rest (transformers 4.x, vLLM, OpenRLHF, LLaMA-Factory) run in `make consumers` (docs/consumers.md).
"""

import numpy as np
import pytest
from test_score import rm_dir  # noqa: F401  (the module-scoped reward-model folder fixture)

from helpers.score import RewardScorer

PROBES = [
    ("什么是人工智能?", "人工智能是让计算机完成通常需要人类智能的任务的技术。"),
    ("Name a prime number.", "Seven.   \n"),  # trailing whitespace: the template strips it
    ("Explain photosynthesis.", "Plants turn light, water and carbon dioxide into sugar and oxygen. " * 12),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
      {"role": "user", "content": "And in French?"}], "Bonjour !"),
]


def _messages(prompt, role="user"):
    return [{"role": role, "content": prompt}] if isinstance(prompt, str) else prompt


@pytest.fixture(scope="module")
def kit_rewards(rm_dir):  # noqa: F811
    return RewardScorer.from_pretrained(rm_dir, device="cpu").score_batch(PROBES, batch_size=2)


def test_pipeline_text_classification_gives_the_kits_rewards(rm_dir, kit_rewards):  # noqa: F811
    """`pipeline("text-classification", function_to_apply="none")` on the chat-templated text."""
    from transformers import AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    texts = [tokenizer.apply_chat_template(_messages(p) + _messages(r, "assistant"), tokenize=False)
             for p, r in PROBES]
    scorer = pipeline("text-classification", model=str(rm_dir), device="cpu", function_to_apply="none")
    got = [out["score"] for out in scorer(texts, batch_size=2, tokenizer_kwargs={"add_special_tokens": False})]
    np.testing.assert_allclose(got, kit_rewards, atol=1e-5)


def test_trl_grpo_reward_path_gives_the_kits_rewards(rm_dir, kit_rewards, tiny_rm_base, tmp_path):  # noqa: F811
    """GRPOTrainer with `reward_funcs=<merged folder>` on conversational prompts: its `_calculate_rewards` (TRL
    1.16 grpo_trainer.py:1604-1620: chat template as text, right padding, `logits[:, 0]`) equals RewardScorer."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    prompts = [_messages(p) for p, _ in PROBES]
    completions = [_messages(r, "assistant") for _, r in PROBES]
    config = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
                        max_completion_length=8, report_to="none", use_cpu=True, bf16=False, logging_steps=1)
    trainer = GRPOTrainer(model=str(tiny_rm_base), reward_funcs=str(rm_dir), args=config,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]))
    inputs = [{"prompt": p} for p in prompts]
    rewards = trainer._calculate_rewards(inputs, prompts, completions, [[0]] * len(prompts))
    np.testing.assert_allclose(rewards[:, 0].cpu().numpy(), kit_rewards, atol=1e-4)
