"""What notebook 02 should not repeat: tokenizer preparation, pre-flight checks, resume, the BT loss.

The training calls themselves (BitsAndBytesConfig, LoraConfig, RewardConfig, RewardTrainer) stay in
the notebook, where the learner reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.nn import functional as F

from .chat import PAD_CANDIDATES, RewardSetupError, prepare_reward_tokenizer  # noqa: F401 (the notebooks' names)


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


def keep_trainable_fp32(model) -> dict[str, int]:
    """Store every trainable parameter (LoRA, the score head) in fp32 again, after TRL cast them to bf16.

    `RewardTrainer` and `KTOTrainer` cast a quantized model's trainable parameters to bf16 in `__init__`
    (trl/trainer/reward_trainer.py: "the PEFT adapter weights are converted to bf16"). Two things break: on a
    T4 (`fp16=True`) the CUDA GradScaler cannot unscale bf16 gradients and the first optimizer step crashes;
    and at small learning rates AdamW's updates are smaller than bf16's spacing, so most entries never move.
    Call this after building the trainer and before `train()`: the optimizer is created in `train()`, so it
    sees fp32 parameters; the matmuls still run in the autocast dtype.

    Returns:
        How many trainable values were stored in each dtype before the cast, e.g. {"torch.bfloat16": 28800}.
    """
    before: dict[str, int] = {}
    for param in model.parameters():
        if param.requires_grad:
            before[str(param.dtype)] = before.get(str(param.dtype), 0) + param.numel()
            if param.dtype != torch.float32:
                param.data = param.data.float()
    return before


def check_trainable_fp32(model) -> None:
    """Stop before training when a trainable parameter is not fp32 (what the CUDA GradScaler requires under fp16).

    Raises:
        RewardSetupError: naming the parameters and the fix.
    """
    wrong = [f"{name} ({param.dtype})" for name, param in model.named_parameters()
             if param.requires_grad and param.dtype != torch.float32]
    if wrong:
        raise RewardSetupError(f"{len(wrong)} trainable parameters are not fp32, e.g. {wrong[:3]}: under fp16 the "
                               "GradScaler cannot unscale their gradients, and in bf16 small updates are lost. "
                               "Call keep_trainable_fp32(trainer.model) after building the trainer.")


def _checkpoint_step(path: Path) -> int:
    return int(path.name.split("-")[-1]) if path.name[11:].isdigit() else -1


def _unusable(checkpoint: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (None: it can): its trainer_state.json is missing or does not parse."""
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "incomplete (no trainer_state.json: the save was interrupted)"
    text = state.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        return "its trainer_state.json is empty (the save was interrupted, or the disk was full)"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        return f"its trainer_state.json is cut short or corrupt ({err.msg}: line {err.lineno}, column {err.colno})"
    return None if isinstance(parsed, dict) else "its trainer_state.json is not a JSON object"


def latest_checkpoint(folder: str | Path, verbose: bool = True) -> str | None:
    """The newest *complete* `checkpoint-N` folder under `folder`, or None (nothing to resume).

    The Trainer writes `trainer_state.json` last (transformers trainer.py, `_save_checkpoint`), so a folder
    without it, or with one that is empty or does not parse (a kill or a full disk while it was written), was cut
    off mid-save: resuming from it would fail in `TrainerState.load_from_json`. It is skipped, and said so.
    """
    found = sorted(Path(folder).glob("checkpoint-*"), key=_checkpoint_step)
    reasons = {p: _unusable(p) for p in found}
    complete = [p for p in found if reasons[p] is None]
    newest = _checkpoint_step(complete[-1]) if complete else -2
    skipped = [f"{p.name}: {reasons[p]}" for p in found if reasons[p] and _checkpoint_step(p) > newest]
    if skipped and verbose:
        print(f"skipping {'; '.join(skipped)}; "
              + (f"resuming from {complete[-1].name}" if complete else "no complete checkpoint to resume from"))
    return str(complete[-1]) if complete else None


def whole_run_loss(log_history: list[dict], session_loss: float | None = None, start_step: int = 0) -> float | None:
    """Mean training loss of the whole run, the part before a resume included.

    `train_result.metrics["train_loss"]` averages only the steps of this session (transformers trainer.py,
    `_finalize_training`: the loss summed since `_initial_global_step`, divided by the steps since). The logged
    losses restored from the checkpoint's trainer_state.json cover the earlier steps, each the mean since the
    previous log line. So: logged windows up to `start_step`, weighted by their lengths, plus this session's mean
    over its own steps. (Steps between the last log line and the checkpoint were never logged: left out.)

    Args:
        session_loss: `train_result.metrics["train_loss"]`; None: use the logged windows only.
        start_step: the step this session resumed from (0: a run from the start).
    """
    logged = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    last = max((e["step"] for e in log_history if "step" in e), default=0)
    total, previous, weighted = 0, 0, 0.0
    for step, loss in logged:
        if session_loss is not None and step > start_step:
            break
        weighted, total, previous = weighted + loss * (step - previous), total + step - previous, step
    if session_loss is not None and last > start_step:
        weighted, total = weighted + session_loss * (last - start_step), total + last - start_step
    return weighted / total if total else None


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


def split_history(log_history: list[dict], before_training: dict | None = None) -> dict[str, dict[str, list]]:
    """Trainer logs as curves: {"train": {"step": [...], "loss": [...]}, "eval": {...}} for plotting.

    `before_training`: what `trainer.evaluate()` returned before `train()` (which starts a fresh log), drawn as the
    eval curve's point at step 0.
    """
    curves: dict[str, dict[str, list]] = {"train": {}, "eval": {}}
    for entry in ([{**before_training, "step": 0}] if before_training else []) + list(log_history):
        mode = "eval" if any(k.startswith("eval_") for k in entry) else "train"
        if mode == "train" and "loss" not in entry:
            continue  # the final summary entry
        for key, value in entry.items():
            name = key.removeprefix("eval_")
            curves[mode].setdefault(name, []).append(value)
    return curves


def storage_experiment(make_trainer, test, batch_size: int = 8) -> dict[str, dict]:
    """Train the same set-up twice, trainable parameters stored as TRL leaves them (bf16) and in fp32.

    Args:
        make_trainer: builds a fresh trainer from the same seed (a new model each call).
        test: held-out pairs to measure accuracy on.

    Returns:
        Per storage dtype: the share of head and LoRA entries that changed during training and the held-out
        accuracy, or the error training raised (bf16 storage under fp16 fails, as on a T4).
    """
    from .score import pairwise_accuracy, score_pairs

    results = {}
    from .env import quiet_transformers

    for storage in ("bfloat16", "float32"):
        with quiet_transformers():  # the base's load report, twice more: explained where it first appears
            trainer = make_trainer()
        if storage == "float32":
            keep_trainable_fp32(trainer.model)
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        try:
            trainer.train()
        except RuntimeError as err:
            results[storage] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
            continue
        after = dict(trainer.model.named_parameters())
        scores = score_pairs(trainer.model, trainer.processing_class, test, batch_size=batch_size)
        results[storage] = {"head_changed": _share_changed(before, after, "score"),
                            "lora_changed": _share_changed(before, after, "lora_"),
                            "accuracy": pairwise_accuracy(scores["chosen"], scores["rejected"])}
    return results


def _share_changed(before: dict, after: dict, part: str) -> float:
    """Share of the entries of the parameters named like `part` whose value changed at all."""
    names = [n for n in before if part in n]
    moved = sum((after[n].detach() != before[n]).sum().item() for n in names)
    return moved / sum(before[n].numel() for n in names)
