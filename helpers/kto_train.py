"""KTO training and evaluation helpers for notebook 05 (KTOConfig, KTOTrainer and LoraConfig stay there).

Pre-flight checks, the labels of every training batch, completion log-probabilities and KTO's implicit
reward β·(log π_θ(y|x) − log π_ref(y|x)), batched generation, the RM-judged win rate, and the curves.
The data side (unpairing, mixing, class weights) is in `helpers.kto`.
"""

from __future__ import annotations

import warnings

from .kto import ONE_LABEL_COST, WEIGHT_BAND, batches_with_both_labels, kto_class_weights


def check_kto_setup(args, dataset) -> dict:
    """Stop before any KTO training step when the set-up would train the wrong thing.

    Checks, in order: `per_device_train_batch_size` > 1 (KTO estimates its KL reference point from the
    *other* completions of a batch); both labels present; and class weights that put λ_D·n_D / (λ_U·n_U)
    in [1, 4/3] (KTO paper, Eq. 8). Warns (does not stop) when batches will hold a single label, or when a
    non-sequential sampler would undo `mix_unpaired`'s order: KTO trains either way, with noisier updates.

    Args:
        args: the `KTOConfig` that will be passed to `KTOTrainer`.
        dataset: the unpaired training rows, in training order (a `label` column of bools).

    Returns:
        What was checked: n_desirable, n_undesirable, weight_ratio, batches_with_both_labels, batches.

    Raises:
        ValueError: naming the argument, its value and the fix.
    """
    size = args.per_device_train_batch_size
    if size <= 1:
        raise ValueError(f"KTOConfig(per_device_train_batch_size={size}): KTO estimates its KL reference "
                         "point from the other completions in the same batch, so a batch of one row has "
                         "none. Set per_device_train_batch_size to 2 or more (the profile's kto_batch_size); "
                         "use gradient_accumulation_steps for a larger effective batch.")
    labels = [bool(label) for label in dataset["label"]]
    n_good, n_bad = sum(labels), len(labels) - sum(labels)
    if min(n_good, n_bad) == 0:
        have = "desirable (label True)" if n_good else "undesirable (label False)"
        raise ValueError(f"The training set has only {have} rows ({len(labels)}): KTO needs both labels. "
                         "Add rows of the other label: unpair_preferences(pairs) gives one of each per pair, "
                         "then mix_unpaired(derived, native, batch_size, seed) orders them.")
    if getattr(args, "train_sampling_strategy", "sequential") != "sequential":
        warnings.warn(f"KTOConfig(train_sampling_strategy={args.train_sampling_strategy!r}) shuffles away the order "
                      "mix_unpaired chose, so some batches may hold a single label. " + ONE_LABEL_COST +
                      " Keep train_sampling_strategy='sequential', the default, to keep that order.",
                      UserWarning, stacklevel=2)
    both, total = batches_with_both_labels(dataset, size)
    if both < total:
        warnings.warn(f"{total - both} of {total} training batches of {size} rows hold a single label. "
                      f"{ONE_LABEL_COST} Order the rows with mix_unpaired(derived, native, batch_size={size}, "
                      "seed=SEED) to give every batch both.", UserWarning, stacklevel=2)
    ratio = args.desirable_weight * n_good / (args.undesirable_weight * n_bad)
    if not WEIGHT_BAND[0] - 1e-9 <= ratio <= WEIGHT_BAND[1] + 1e-9:
        raise ValueError(f"desirable_weight={args.desirable_weight}, undesirable_weight="
                         f"{args.undesirable_weight} with n_D={n_good}, n_U={n_bad} give λ_D·n_D/(λ_U·n_U) = "
                         f"{ratio:.3f}, outside [1, 4/3] (KTO paper, Eq. 8). Use kto_class_weights(n_D, n_U) "
                         f"= {kto_class_weights(n_good, n_bad)}.")
    return {"n_desirable": n_good, "n_undesirable": n_bad, "weight_ratio": ratio,
            "batches_with_both_labels": both, "batches": total}


def labels_per_batch(dataloader) -> list[tuple[int, int]]:
    """(desirable, undesirable) rows in every batch a dataloader yields: `trainer.get_train_dataloader()`."""
    counts = []
    for batch in dataloader:
        labels = [bool(label) for label in batch["label"]]
        counts.append((sum(labels), len(labels) - sum(labels)))
    return counts


def _prompt_completion_ids(tokenizer, prompt: list[dict], completion: list[dict]):
    """(prompt ids, completion ids), split where KTOTrainer splits: at the end of the shared prefix."""
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
    full_ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=False)
    pairs = zip(prompt_ids, full_ids, strict=False)
    cut = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(prompt_ids), len(full_ids)))
    return full_ids[:cut], full_ids[cut:]


def completion_logps(model, tokenizer, dataset, batch_size: int = 8, max_length: int | None = None):
    """log π(y|x) per row: the completion tokens' log-probabilities, summed, as KTOTrainer computes them.

    Args:
        model: a causal LM (for a PEFT model, whatever adapters are active are used).
        dataset: rows with `prompt` (message list) and `completion` ([assistant message]).
        max_length: cut prompt + completion to this many tokens, like `KTOConfig.max_length`.

    Returns:
        A float numpy array, one value per row, in input order.
    """
    import numpy as np
    import torch

    from .score import _autocast

    rows = [_prompt_completion_ids(tokenizer, row["prompt"], row["completion"]) for row in dataset]
    device, was_training, out = next(model.parameters()).device, model.training, []
    model.eval()
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        seqs = [(p + c)[:max_length] if max_length else p + c for p, c in chunk]
        ids = torch.full((len(seqs), max(map(len, seqs))), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, seq in enumerate(seqs):
            ids[i, :len(seq)], mask[i, :len(seq)] = torch.tensor(seq), 1
        with torch.no_grad(), _autocast(model, device):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
        token_logps = logits.log_softmax(-1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1).cpu()
        # position t predicts token t+1: score the tokens from the first completion token on, padding excluded
        first = torch.tensor([len(p) for p, _ in chunk])[:, None]
        scored = (torch.arange(1, ids.shape[1])[None, :] >= first) & mask[:, 1:].bool()
        out.append((token_logps * scored).sum(-1).numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def implicit_rewards(model, tokenizer, dataset, beta: float, batch_size: int = 8,
                     max_length: int | None = None) -> dict:
    """KTO's implicit reward β·(log π_θ(y|x) − log π_ref(y|x)) per row; π_ref = the model, adapters disabled.

    Args:
        model: a PEFT model (`trainer.model`): adapter on = the policy, `disable_adapter()` = the reference.

    Returns:
        {"policy": log π_θ, "reference": log π_ref, "rewards": β·(policy − reference)}, arrays per row.
    """
    if not hasattr(model, "disable_adapter"):
        raise ValueError(f"implicit_rewards needs a PEFT model, got {type(model).__name__}: the reference is "
                         "the same model with its adapters disabled. Pass trainer.model of a KTOTrainer that "
                         "was given peft_config.")
    policy = completion_logps(model, tokenizer, dataset, batch_size, max_length)
    with model.disable_adapter():
        reference = completion_logps(model, tokenizer, dataset, batch_size, max_length)
    return {"policy": policy, "reference": reference, "rewards": beta * (policy - reference)}


def desirable_margin(values, labels) -> float:
    """mean(values of desirable rows) − mean(values of undesirable rows)."""
    import numpy as np

    values, labels = np.asarray(values, dtype=float), np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("desirable_margin needs rows of both labels; these rows have only one.")
    return float(values[labels].mean() - values[~labels].mean())


def generate_responses(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int = 8,
                       do_sample: bool = False, seed: int = 0, progress: bool = True) -> list[str]:
    """The model's answers to chat prompts, batched with left padding; greedy unless `do_sample`.

    Whatever adapters are active are used: call it inside `with model.disable_adapter():` for the
    reference. With `do_sample`, each batch is seeded from `seed`, so a rerun gives the same answers.

    Returns:
        The decoded answers (special tokens removed, stripped), in input order.
    """
    import torch
    from tqdm.auto import tqdm

    from .score import _autocast

    device, answers, was_training = next(model.parameters()).device, [], model.training
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # new tokens are appended on the right
    pad = tokenizer.pad_token
    if pad is None:  # Llama 3.x Instruct has none: pad with EOS (masked), as TRL's trainers do, only while generating
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    try:
        for start in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="generating"):
            torch.manual_seed(seed + start)
            batch = tokenizer.apply_chat_template(prompts[start:start + batch_size], padding=True,
                                                  add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True).to(device)
            with torch.no_grad(), _autocast(model, device):
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new_tokens = out[:, batch["input_ids"].shape[1]:]
            answers += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
        model.train(was_training)
    return answers


def win_rate(after, before) -> float:
    """Share of prompts where `after` scores above `before` (ties count one half); 0.5 is no change."""
    import numpy as np

    after, before = np.asarray(after, dtype=float), np.asarray(before, dtype=float)
    if after.shape != before.shape or after.size == 0:
        raise ValueError(f"win_rate needs two non-empty score lists of equal length, got {after.shape} and "
                         f"{before.shape}: score the same prompts before and after.")
    return float(np.mean((after > before) + 0.5 * (after == before)))


def plot_kto_curves(log_history: list[dict]):
    """KTO's training logs: rewards/chosen, rewards/rejected, rewards/margins (left) and kl (right).

    Args:
        log_history: `trainer.state.log_history`.

    Returns:
        A matplotlib `Figure`.
    """
    import matplotlib.pyplot as plt

    from .train import split_history

    curves = split_history(log_history)["train"]
    if "rewards/chosen" not in curves:
        raise ValueError("The log history has no rewards/chosen: train first, with logging_steps no larger "
                         "than the number of steps.")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    colours = {"rewards/chosen": "tab:green", "rewards/rejected": "tab:red", "rewards/margins": "black"}
    for key, colour in colours.items():
        if key in curves:
            left.plot(curves["step"], curves[key], marker="o", color=colour, label=key)
    left.axhline(0, color="grey", linewidth=0.8)
    left.set(xlabel="step", ylabel="β · log π_θ/π_ref", title="implicit rewards per batch (train)")
    left.legend()
    right.plot(curves["step"], curves["kl"], marker="o", color="tab:blue")
    right.set(xlabel="step", ylabel="KL estimate (nats)", title="kl: the reference point z₀ (clamped at 0)")
    fig.tight_layout()
    plt.close(fig)
    return fig
