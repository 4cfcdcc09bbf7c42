"""What notebook 02 should not repeat: tokenizer preparation, pre-flight checks, resume, the BT loss.

The training calls themselves (BitsAndBytesConfig, LoraConfig, RewardConfig, RewardTrainer) stay in
the notebook, where the learner reads them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from .tiny import LLAMA3_CHAT_TEMPLATE, LLAMA3_PAD_TOKEN

# LLaMA 3.0 calls id 128004 `<|reserved_special_token_2|>`; LLaMA 3.1 renamed it `<|finetune_right_pad_id|>`.
PAD_CANDIDATES = (LLAMA3_PAD_TOKEN, "<|reserved_special_token_2|>")


class RewardSetupError(ValueError):
    """A reward-model set-up that would train or save the wrong thing; the message names the fix."""

    def _render_traceback_(self):
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


def prepare_reward_tokenizer(tokenizer, chat_template: str = LLAMA3_CHAT_TEMPLATE):
    """Give a LLaMA-3 tokenizer a chat template (the base model ships none) and a dedicated pad token.

    With pad = EOS the reward can be read at the wrong position: a sequence that ends in EOS looks
    padded there. So the pad token is LLaMA 3's reserved `<|finetune_right_pad_id|>` (id 128004).

    Raises:
        RewardSetupError: the vocabulary has no dedicated pad token to use.
    """
    if tokenizer.chat_template is None:
        tokenizer.chat_template = chat_template
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        vocab = tokenizer.get_vocab()
        found = next((tok for tok in PAD_CANDIDATES if tok in vocab), None)
        if found is None:
            raise RewardSetupError(f"No dedicated pad token in this vocabulary (looked for {PAD_CANDIDATES}); "
                                   "pad = EOS misplaces the reward. Add one with tokenizer.add_special_tokens "
                                   "and model.resize_token_embeddings.")
        tokenizer.pad_token = found
    return tokenizer


def check_reward_setup(model, peft_config=None) -> None:
    """Fail before any training step when the set-up would train or save the wrong reward model.

    Checks: one output (`num_labels=1`); a pad id that is set and differs from EOS; and, with LoRA,
    `task_type="SEQ_CLS"` (or `modules_to_save=["score"]`), without which the head is neither trained
    nor saved and the merged model carries a random head.
    """
    config = model.config
    if getattr(config, "num_labels", None) != 1:
        raise RewardSetupError(f"The model has num_labels={config.num_labels}; a reward model outputs one scalar. "
                               "Load it with AutoModelForSequenceClassification.from_pretrained(..., num_labels=1).")
    if config.pad_token_id is None or config.pad_token_id == config.eos_token_id:
        raise RewardSetupError(f"model.config.pad_token_id is {config.pad_token_id} (EOS is {config.eos_token_id}): "
                               "set model.config.pad_token_id = tokenizer.pad_token_id after "
                               "prepare_reward_tokenizer(tokenizer).")
    if peft_config is None:
        return
    task = getattr(peft_config, "task_type", None)
    task = getattr(task, "value", task)
    saves_head = "score" in (getattr(peft_config, "modules_to_save", None) or [])
    if task != "SEQ_CLS" and not saves_head:
        raise RewardSetupError(f"LoraConfig has task_type={task!r}: the `score` head would stay random and "
                               "unsaved. Use LoraConfig(..., task_type=\"SEQ_CLS\") (or modules_to_save=[\"score\"]).")


def check_trainable_pairs(n_fit: int, n_total: int, max_length: int, suggested: int | None = None) -> None:
    """Stop before training when RewardTrainer's silent length filter would leave no pair to train on."""
    if n_total == 0:
        raise RewardSetupError("The training set is empty: run notebook 01 (01_prepare_data) to write it.")
    if n_fit == 0:
        hint = f" (the audit suggests max_length={suggested})" if suggested else ""
        raise RewardSetupError(f"All {n_total} training pairs are longer than max_length={max_length} tokens, so "
                               f"RewardTrainer would drop every one. Raise max_length{hint} or shorten the data.")


def latest_checkpoint(folder: str | Path) -> str | None:
    """The newest `checkpoint-N` folder under `folder`, or None (nothing to resume)."""
    folder = Path(folder)
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name[11:].isdigit()
                   else -1)
    return str(found[-1]) if found else None


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None):
    """-log σ(r_chosen - r_rejected [- margin]), averaged: the loss RewardTrainer minimises."""
    diff = r_chosen - r_rejected - (margin if margin is not None else 0)
    return -F.logsigmoid(diff).mean()


def training_autocast(args, device) -> torch.autocast:
    """The autocast the Trainer trains under (bf16 or fp16 per `args`), for forward passes outside it."""
    low = torch.bfloat16 if args.bf16 else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=low, enabled=bool(args.bf16 or args.fp16))


def trainer_loss_on_batch(trainer, batch: dict) -> torch.Tensor:
    """The loss `trainer.compute_loss` gives on `batch` (eval mode, under the training autocast), without side effects.

    `RewardTrainer.compute_loss` also records accuracy/margin for the next log line; those records are
    removed again so the first evaluation is not skewed by this extra batch.
    """
    model = trainer.model
    model.eval()
    inputs = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in batch.items()}
    with torch.no_grad(), training_autocast(trainer.args, model.device):
        loss = trainer.compute_loss(model, inputs)
    trainer._metrics["eval"].clear()  # undo the metric records of this one-off call
    return loss.detach().float()


def split_history(log_history: list[dict]) -> dict[str, dict[str, list]]:
    """Trainer logs as curves: {"train": {"step": [...], "loss": [...]}, "eval": {...}} for plotting."""
    curves: dict[str, dict[str, list]] = {"train": {}, "eval": {}}
    for entry in log_history:
        mode = "eval" if any(k.startswith("eval_") for k in entry) else "train"
        if mode == "train" and "loss" not in entry:
            continue  # the final summary entry
        for key, value in entry.items():
            name = key.removeprefix("eval_")
            curves[mode].setdefault(name, []).append(value)
    return curves
