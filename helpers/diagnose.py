"""What a reward model actually learned: calibration of its preferences and its bias towards length.

Both read scored pairs (`r_chosen`, `r_rejected` arrays, as `helpers.score.score_pairs` returns them).
"""

from __future__ import annotations

import numpy as np

from .score import pad_batch, pairwise_accuracy, spearman


def calibration_table(chosen, rejected, n_bins: int = 10, seed: int = 0) -> dict:
    """Predicted P(a preferred over b) = σ(r_a − r_b) against how often a really was the preferred one.

    Each pair is shown in a random order (a = chosen or rejected, fixed by `seed`), so predictions span
    0..1 and "observed" is the share of pairs in a bin where a was the human choice. A calibrated model
    has observed ≈ predicted in every bin.

    Returns:
        {"bins": [{"lo", "hi", "n", "predicted", "observed"}, ...], "ece": expected calibration error,
        i.e. Σ_bins (n_b / N) · |predicted_b − observed_b|}.
    """
    chosen, rejected = np.asarray(chosen, float), np.asarray(rejected, float)
    flip = np.random.default_rng(seed).random(len(chosen)) < 0.5
    r_a, r_b = np.where(flip, rejected, chosen), np.where(flip, chosen, rejected)
    predicted = 1.0 / (1.0 + np.exp(-(r_a - r_b)))
    observed = (~flip).astype(float)  # a is the chosen answer
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(predicted, edges[1:-1]), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = which == b
        if not mask.any():
            continue
        p, o = float(predicted[mask].mean()), float(observed[mask].mean())
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(mask.sum()), "predicted": p,
                     "observed": o})
        ece += mask.sum() / len(predicted) * abs(p - o)
    return {"bins": bins, "ece": float(ece), "pairs": int(len(predicted))}


def length_bias(rewards, lengths, chosen, rejected, balanced) -> dict:
    """Does the model just prefer longer answers?

    Args:
        rewards, lengths: every scored response and its length (tokens or characters).
        chosen, rejected: rewards of the pairs; balanced: per pair, True when chosen is not longer.

    Returns:
        Spearman correlation of reward with length, and pairwise accuracy on the length-balanced pairs
        (where length cannot explain the choice) against the rest; an accuracy is None when its group is empty.
    """
    chosen, rejected, balanced = np.asarray(chosen), np.asarray(rejected), np.asarray(balanced, dtype=bool)

    def accuracy(mask):
        return pairwise_accuracy(chosen[mask], rejected[mask]) if mask.any() else None

    return {
        "length_reward_spearman": spearman(rewards, lengths),
        "accuracy_length_balanced": accuracy(balanced), "accuracy_not_length_balanced": accuracy(~balanced),
        "pairs_length_balanced": int(balanced.sum()), "pairs_not_length_balanced": int((~balanced).sum()),
    }


def last_token_states(model, tokenizer, conversations: list[list[dict]], batch_size: int = 16) -> np.ndarray:
    """The decoder's hidden state at the last real token of each conversation: what the `score` head reads."""
    import torch

    states, device = [], next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id  # masked anyway
    with torch.no_grad():
        for i in range(0, len(conversations), batch_size):
            ids = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=False)
                   for c in conversations[i:i + batch_size]]
            input_ids, mask = (t.to(device) for t in pad_batch(ids, pad_id))
            hidden = model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            states.append(hidden[torch.arange(len(ids)), mask.sum(1) - 1].float().cpu().numpy())
    return np.concatenate(states)


def random_head_spread(h_chosen, h_rejected, n_heads: int = 200, seed: int = 0) -> dict:
    """Pairwise accuracy of `n_heads` random linear heads on the same hidden states, and why it spreads.

    A head w ranks a pair right when w · (h_chosen − h_rejected) > 0. If the pairs' difference vectors point in
    one shared direction (the rejected answers differ from the chosen ones in a consistent way: longer, another
    closing phrase), every head is mostly right or mostly wrong together, depending on its side of that
    direction: accuracy far from 0.5 either way, not a coin flip per pair.

    Returns:
        {"accuracies": per head, "mean_cosine_to_mean_difference": how aligned the pairs' differences are}.
    """
    diff = np.asarray(h_chosen, float) - np.asarray(h_rejected, float)
    heads = np.random.default_rng(seed).normal(size=(n_heads, diff.shape[1]))
    accuracies = ((diff @ heads.T) > 0).mean(axis=0)
    mean = diff.mean(axis=0)
    cosine = diff @ mean / (np.linalg.norm(diff, axis=1) * np.linalg.norm(mean) + 1e-12)
    return {"accuracies": accuracies, "mean_cosine_to_mean_difference": float(cosine.mean())}


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of a set of answers (words): 1.0 = no repetition, near 0 = collapse."""
    grams = [tuple(words[i:i + n]) for t in texts for words in [t.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def describe_answer_change(before: dict, after: dict, win_rate: float) -> list[str]:
    """What happened to a policy's answers, in sentences written from this run's numbers (notebook 05).

    Args:
        before, after: {"RM reward (mean)", "answer length (words)", "distinct-2", "prompts sharing an answer"}.
        win_rate: share of prompts whose answer the reward model scores higher after than before.

    Returns:
        One sentence per measure, then a reading: over-optimisation signs only when the reward rose while the
        answers grew more alike (distinct-2 down by more than 0.05, or more prompts sharing an answer).
    """
    d_reward = after["RM reward (mean)"] - before["RM reward (mean)"]
    d_distinct = after["distinct-2"] - before["distinct-2"]
    shared = (before["prompts sharing an answer"], after["prompts sharing an answer"])
    lines = [f"The reward model's mean score went {'up' if d_reward > 0 else 'down'} by {abs(d_reward):.3f}, and it "
             f"prefers the trained policy's answer on {win_rate:.0%} of the prompts.",
             f"Answers went from {before['answer length (words)']:.1f} to {after['answer length (words)']:.1f} words;"
             f" distinct-2 from {before['distinct-2']:.2f} to {after['distinct-2']:.2f}; prompts sharing an answer "
             f"word for word from {shared[0]} to {shared[1]}."]
    alike = d_distinct < -0.05 or shared[1] > shared[0]
    if d_reward > 0 and alike:
        lines.append("Reading: the reward rose while the answers grew more alike. That is the signature of "
                     "over-optimisation: read the answers above for the style the policy converged on.")
    elif d_reward > 0:
        lines.append("Reading: the reward rose and the answers did not grow more alike by these measures; whether "
                     "they got better is for the answers themselves (and notebook 06's judges) to show.")
    else:
        lines.append("Reading: the reward model does not prefer the trained policy on average. KTO never saw it: "
                     "the two learned from the same data but need not agree, least of all after a short run.")
    return lines
