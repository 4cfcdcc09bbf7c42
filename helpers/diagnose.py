"""What a reward model actually learned: calibration of its preferences and its bias towards length.

Both read scored pairs (`r_chosen`, `r_rejected` arrays, as `helpers.score.score_pairs` returns them).
"""

from __future__ import annotations

import numpy as np

from .score import pairwise_accuracy, spearman


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
