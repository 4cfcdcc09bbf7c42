"""Figures for the course: each function returns a matplotlib `Figure` to show, change or save.

Figures are closed in pyplot before they are returned, so a notebook shows each one once (as the cell's
value) and long runs do not pile up open figures.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

SIDE_COLOURS = {"chosen": "tab:green", "rejected": "tab:red"}
LABEL_COLOURS = {True: "tab:green", False: "tab:red"}


def _split_order(names) -> list[str]:
    """train first, then test, then any other split name."""
    return sorted({n for n in names if n is not None}, key=lambda n: (n != "train", n != "test", n))


def plot_token_lengths(audit: dict, bins: int = 30):
    """Histograms of tokens per side (chosen, rejected), one panel per split, with the `max_length` line.

    Args:
        audit: the dict returned by `helpers.audit.audit_lengths`.
    """
    lengths, max_length = audit["lengths"], audit["max_length"]
    splits = _split_order(lengths["split"]) or ["all"]
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.5), squeeze=False, sharey=True)
    top = max(lengths["chosen_tokens"] + lengths["rejected_tokens"] + [max_length])
    edges = [top * i / bins for i in range(bins + 1)]
    for ax, split in zip(axes[0], splits, strict=True):
        for side, colour in SIDE_COLOURS.items():
            values = [n for n, s in zip(lengths[f"{side}_tokens"], lengths["split"], strict=True)
                      if split == "all" or s == split]
            ax.hist(values, bins=edges, alpha=0.55, color=colour, label=side)
        ax.axvline(max_length, color="black", linestyle="--", label=f"max_length = {max_length}")
        over = sum(r["split"] == split or split == "all" for r in audit["over_max_length_rows"])
        ax.set(title=f"{split}: {over} pair(s) over max_length", xlabel="tokens (prompt + answer)")
    axes[0][0].set_ylabel("pairs")
    axes[0][0].legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_category_mix(dataset, column: str = "category"):
    """Bar chart of rows per category (or any `column`), one bar per split."""
    splits = list(dataset["split"]) if "split" in dataset.column_names else ["all"] * len(dataset)
    counts = Counter(zip(dataset[column], splits, strict=True))
    names, split_names = sorted({c for c, _ in counts}), _split_order(splits)
    width = 0.8 / len(split_names)
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names)), 3.5))
    for j, split in enumerate(split_names):
        xs = [i + j * width for i in range(len(names))]
        ax.bar(xs, [counts[(n, split)] for n in names], width, label=split)
    ax.set_xticks([i + width * (len(split_names) - 1) / 2 for i in range(len(names))], names)
    ax.set(ylabel="rows", title=f"{column} mix per split")
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_label_balance(dataset):
    """Desirable vs undesirable rows per split, stacked by `source` (pairs / native) when present."""
    splits = list(dataset["split"]) if "split" in dataset.column_names else ["all"] * len(dataset)
    sources = list(dataset["source"]) if "source" in dataset.column_names else ["rows"] * len(dataset)
    counts = Counter(zip(splits, dataset["label"], sources, strict=True))
    split_names, source_names = _split_order(splits), sorted(set(sources))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, split in enumerate(split_names):
        for k, label in enumerate((True, False)):
            bottom = 0
            for m, source in enumerate(source_names):
                n = counts[(split, label, source)]
                ax.bar(i + (k - 0.5) * 0.4, n, 0.38, bottom=bottom, color=LABEL_COLOURS[label],
                       alpha=1.0 - 0.4 * m, label=f"{'desirable' if label else 'undesirable'} ({source})"
                       if i == 0 else None)
                bottom += n
    ax.set_xticks(range(len(split_names)), split_names)
    ax.set(ylabel="rows", title="label balance per split")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def save_figure(fig, run_dir, name: str) -> Path:
    """Write `fig` to RUN_DIR/figures/<name>.png and return the path."""
    path = Path(run_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


CURVE_LABELS = {"loss": "Bradley-Terry loss (nats)", "accuracy": "pairwise accuracy",
                "margin": "mean r(chosen) - r(rejected)"}
# what a model that has learned nothing scores: a coin flip (accuracy 0.5, loss -log sigma(0) = log 2), no gap
CHANCE = {"loss": (float(np.log(2)), "chance: log 2"), "accuracy": (0.5, "chance: 0.5"), "margin": (0.0, "no gap")}


def plot_training_curves(curves: dict, keys: tuple[str, ...] = ("loss", "accuracy", "margin")):
    """Train and eval curves from `helpers.train.split_history`, one panel per metric, against the step.

    Each panel has its y-label and the chance level as a dotted line; an evaluation logged at step 0 (before
    training) is the curve's first point, so the rise from chance is visible.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for mode, style, name in (("train", "-", "train batches"), ("eval", "o-", "held-out")):
            steps, values = curves[mode].get("step", []), curves[mode].get(key, [])
            if values:
                ax.plot(steps[: len(values)], values, style, label=name, markersize=4)
        if key in CHANCE:
            ax.axhline(CHANCE[key][0], color="grey", linestyle=":", label=CHANCE[key][1])
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.set_ylabel(CURVE_LABELS.get(key, key))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_reward_histograms(chosen, rejected, bins: int = 25, title: str = "held-out rewards"):
    """Overlaid histograms of the rewards of chosen and rejected answers."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    values = list(chosen) + list(rejected)
    edges = np.linspace(min(values), max(values), bins + 1) if values else bins
    for side, data in (("chosen", chosen), ("rejected", rejected)):
        ax.hist(data, bins=edges, alpha=0.55, color=SIDE_COLOURS[side], label=f"{side} (mean {np.mean(data):.2f})")
    ax.set_xlabel("reward")
    ax.set_ylabel("answers")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def wilson_interval(observed, n, z: float = 1.0):
    """Wilson score interval for a rate `observed` out of `n` trials, at `z` standard errors: (low, high) arrays.

    Unlike p ± z sqrt(p(1-p)/n) it does not shrink to nothing in a bin of 2 pairs that happen to agree. It is the set
    of p with (observed - p)^2 <= z^2 p (1 - p) / n, so it always holds `observed` (p = observed makes the left side
    0) and lies in [0, 1]; at observed = 1 its upper bound is exactly 1, which the closed form computes as
    1 - 1.1e-16 for n = 6, 10, 17, ... The bounds are therefore clipped to the point and to [0, 1]: rounding,
    not a different interval.
    """
    observed, n = np.asarray(observed, float), np.maximum(np.asarray(n, float), 1)
    centre = (observed + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(observed * (1 - observed) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return np.clip(np.minimum(centre - half, observed), 0, 1), np.clip(np.maximum(centre + half, observed), 0, 1)


def plot_calibration(table: dict):
    """Reliability diagram: observed preference rate against predicted probability, per bin (from
    `helpers.diagnose.calibration_table`), with each bin's count and a Wilson one-standard-error bar; the diagonal
    is perfect calibration."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    bins = table["bins"]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    observed = np.array([b["observed"] for b in bins])
    low, high = wilson_interval(observed, np.array([b["n"] for b in bins]))
    errors = np.vstack([observed - low, high - observed])
    ax.errorbar([b["predicted"] for b in bins], observed, yerr=errors, fmt="o-", color="tab:blue", capsize=3,
                label=f"model (ECE {table['ece']:.3f}); bars: Wilson, 1 s.e.")
    for b in bins:
        ax.annotate(f"n={b['n']}", (b["predicted"], b["observed"]), fontsize=7, xytext=(4, -10),
                    textcoords="offset points")
    ax.set_xlabel("predicted P(first answer preferred)")
    ax.set_ylabel("observed rate")
    ax.set_title("calibration on held-out pairs")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_length_bias(lengths, rewards, xlabel: str = "response length (tokens)"):
    """Reward against response length, with a least-squares line."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    x, y = np.asarray(lengths, float), np.asarray(rewards, float)
    ax.scatter(x, y, s=10, alpha=0.5)
    if len(x) > 1 and x.std() > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 2)
        ax.plot(xs, slope * xs + intercept, color="tab:red", label=f"slope {slope:.4f} per token")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("reward")
    ax.set_title("does the reward follow the length?")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_margin_histogram(chosen, rejected, bins: int = 25, title: str = "per-pair margin, held-out pairs"):
    """Histogram of r(chosen) - r(rejected) per pair: right of 0 the model agrees with the label, left of it not."""
    margins = np.asarray(chosen, float) - np.asarray(rejected, float)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.hist(margins, bins=bins, color="tab:blue", alpha=0.7)
    ax.axvline(0, color="black", linestyle="--")
    wrong = int((margins < 0).sum())
    ax.set(xlabel="r(chosen) - r(rejected)", ylabel="pairs",
           title=f"{title}: {wrong} of {len(margins)} left of 0 (ranked wrongly)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_random_heads(accuracies, trained: float | None = None, untrained=None):
    """Histogram of held-out accuracies of random reward heads, with chance (0.5) and the trained head.

    `untrained`: the same heads' accuracies on the untrained base's hidden states, drawn over the first histogram.
    """
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = np.linspace(0, 1, 21)
    ax.hist(accuracies, bins=bins, color="tab:grey", alpha=0.8,
            label="random heads" if untrained is None else "random heads, trained body")
    if untrained is not None:
        ax.hist(untrained, bins=bins, histtype="step", color="tab:orange", linewidth=2,
                label="random heads, untrained base")
    ax.axvline(0.5, color="black", linestyle=":", label="coin flip")
    if trained is not None:
        ax.axvline(trained, color="tab:green", linewidth=2, label=f"trained head ({trained:.2f})")
    where = "the same hidden states" if untrained is None else "two bodies' hidden states"
    ax.set(xlabel="held-out pairwise accuracy", ylabel="heads", title=f"{len(accuracies)} random heads on {where}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_before_after(before: dict, after: dict, title: str = "before and after training"):
    """One panel per measure (e.g. RM reward, answer length, distinct-2): its value before and after."""
    keys = list(before)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.bar(["before", "after"], [before[key], after[key]], color=["tab:grey", "tab:blue"])
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_implicit_rewards(rewards, labels, title: str = "held-out implicit rewards after training"):
    """Histograms of KTO's implicit reward beta * log(pi / pi_ref) per label; before training all are 0 (one bar)."""
    rewards, labels = np.asarray(rewards, float), np.asarray(labels, bool)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    edges = np.linspace(rewards.min(), rewards.max(), 26) if np.ptp(rewards) > 0 else 25
    for label in (True, False):
        ax.hist(rewards[labels == label], bins=edges, alpha=0.55, color=LABEL_COLOURS[label],
                label=f"{'desirable' if label else 'undesirable'} (mean {rewards[labels == label].mean():+.2f})")
    ax.axvline(0, color="black", linestyle=":", label="before training: every row 0")
    ax.set(xlabel="beta * log(pi_theta / pi_ref)", ylabel="held-out rows", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig
