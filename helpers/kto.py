"""KTO (Kahneman-Tversky Optimization, Ethayarajh et al., 2024): the unpaired data of notebooks 01 and 05.

KTO learns from unpaired rows (prompt, completion, label: desirable or not). This module turns preference
pairs into such rows, mixes them with native unpaired rows so that every training batch holds both labels
(steadier updates; KTO itself does not require it), and weights the two classes as the KTO paper's Eq. 8 asks.
"""

from __future__ import annotations

import random
import warnings

from datasets import Dataset

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
WEIGHT_BAND = (1.0, 4 / 3)  # KTO paper, Eq. 8: lambda_D * n_D / (lambda_U * n_U) should lie in this band
WEIGHT_TARGET = 7 / 6  # the middle of the band: inside it even after TRL rounds its own check


def unpair_preferences(pairs_dataset) -> Dataset:
    """Each pair -> a desirable row (its chosen answer) and an undesirable row (its rejected answer).

    Unlike TRL's `unpair_preference_dataset`, which emits long runs of one label, the two rows of a pair
    stay next to each other. The prompt and every metadata column are kept; `source` is "pairs".

    Returns:
        A `Dataset` with prompt, completion, label, the metadata columns and source; twice as many rows.
    """
    missing = [c for c in ("chosen", "rejected") if c not in pairs_dataset.column_names]
    if missing:
        raise ValueError(f"unpair_preferences needs preference pairs; the dataset has no {missing} "
                         f"column(s). Its columns are {pairs_dataset.column_names}: load it with "
                         "load_preferences.")
    cols = pairs_dataset.to_dict()
    answers = [a for pair in zip(cols["chosen"], cols["rejected"], strict=True) for a in pair]
    out = {"prompt": [p for p in cols.get("prompt", [None] * len(answers)) for _ in (0, 1)],
           "completion": answers, "label": [True, False] * len(pairs_dataset)}
    for key, values in cols.items():
        if key not in PAIR_COLUMNS:
            out[key] = [v for v in values for _ in (0, 1)]
    out["source"] = ["pairs"] * len(answers)
    return Dataset.from_dict(out)


def _batch_sizes(n_rows: int, batch_size: int) -> list[int]:
    return [batch_size] * (n_rows // batch_size) + ([n_rows % batch_size] if n_rows % batch_size else [])


def _feasible(n_desirable: int, n_undesirable: int, batch_size: int) -> bool:
    sizes = _batch_sizes(n_desirable + n_undesirable, batch_size)
    return batch_size >= 2 and min(sizes) >= 2 and min(n_desirable, n_undesirable) >= len(sizes)


ONE_LABEL_COST = ("KTO still trains: its KL reference point comes from the other completions of the batch, "
                  "whatever their labels (TRL kto_trainer.py, 'add_kl_completion_ids'). But a one-label batch "
                  "pushes only one way, which makes the updates noisier, and its log has no reward for the "
                  "missing label.")


def _check_mixable(n_desirable: int, n_undesirable: int, batch_size: int) -> bool:
    """Raise for what cannot work; warn (and return False) when some batches will hold a single label."""
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for a batch to hold both labels, got {batch_size}. "
                         "KTOTrainer needs per_device_train_batch_size > 1 anyway.")
    if min(n_desirable, n_undesirable) == 0:
        raise ValueError(f"Only one label present ({n_desirable} desirable, {n_undesirable} undesirable): "
                         "the class weights (KTO paper, Eq. 8) need both. Add rows of the missing label "
                         "(unpair_preferences gives both).")
    if _feasible(n_desirable, n_undesirable, batch_size):
        return True
    n = n_desirable + n_undesirable
    better = next((b for b in range(batch_size + 1, n + 1) if _feasible(n_desirable, n_undesirable, b)), None)
    warnings.warn(f"{n} rows ({n_desirable} desirable, {n_undesirable} undesirable) cannot put both labels in "
                  f"every batch of {batch_size} (too few of the rarer label, or a last batch of one row). "
                  f"{ONE_LABEL_COST} batch_size={better} would give every batch both; or add rows of the rarer "
                  "label.", UserWarning, stacklevel=3)
    return False


def _spread(n_rare: int, sizes: list[int]) -> list[int]:
    """Rarer-label rows per batch when not every batch can have one: one each, evenly spaced, for as many batches of
    two or more rows as there are such rows; any rest goes where a row of the other label still stays."""
    eligible = [i for i, size in enumerate(sizes) if size >= 2]
    k = min(n_rare, len(eligible))
    plan = [0] * len(sizes)
    for j in range(k):
        plan[eligible[j * len(eligible) // k]] = 1
    left = n_rare - k
    for floor in (1, 0):  # first keep one row of the other label in each batch, then fill what remains
        for i, size in enumerate(sizes):
            take = min(left, max(0, size - floor - plan[i]))
            plan[i], left = plan[i] + take, left - take
    return plan


def _desirable_per_batch(n_desirable: int, sizes: list[int]) -> list[int]:
    """One row of each label per batch; other desirable rows spread in proportion (cumulative rounding)."""
    spare, extra = sum(s - 2 for s in sizes), n_desirable - len(sizes)
    plan, done, room = [], 0, 0
    for size in sizes:
        room += size - 2
        target = extra * room // spare if spare else 0
        plan.append(1 + target - done)
        done = target
    return plan


def mix_unpaired(derived, native=None, batch_size: int = 8, seed: int = 0) -> Dataset:
    """Concatenate unpaired rows and order them so that every batch of `batch_size` holds both labels if it can.

    Each label's rows are shuffled with `seed`; each batch gets at least one row of each label and otherwise
    the overall label ratio; positions inside a batch are shuffled too. Same inputs and seed, same order.
    KTOConfig keeps this order: its `train_sampling_strategy` defaults to "sequential" (leave it so).

    Args:
        derived: unpaired rows from `unpair_preferences` (`source` "pairs").
        native: natively unpaired rows from `load_unpaired` (given `source` "native"), or None.

    When the rarer label cannot reach every batch, its rows are spread evenly instead and a warning says what
    that costs and which batch_size would avoid it.

    Raises:
        ValueError: batch_size < 2, or a label is missing.
    """
    parts = [derived.to_list()] + ([[{**r, "source": r.get("source") or "native"} for r in native.to_list()]]
                                   if native is not None else [])
    rows = [r for part in parts for r in part]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    pools = {label: [r for r in rows if r["label"] == label] for label in (True, False)}
    mixable = _check_mixable(len(pools[True]), len(pools[False]), batch_size)
    rng = random.Random(seed)
    for pool in pools.values():
        rng.shuffle(pool)
    ordered, sizes = [], _batch_sizes(len(rows), batch_size)
    if mixable:
        plan = _desirable_per_batch(len(pools[True]), sizes)
    elif len(pools[True]) <= len(pools[False]):
        plan = _spread(len(pools[True]), sizes)
    else:
        plan = [size - n for size, n in zip(sizes, _spread(len(pools[False]), sizes), strict=True)]
    for size, n_good in zip(sizes, plan, strict=True):
        labels = [True] * n_good + [False] * (size - n_good)
        rng.shuffle(labels)
        ordered += [pools[label].pop() for label in labels]
    return Dataset.from_dict({c: [r.get(c) for r in ordered] for c in columns})


def batches_with_both_labels(dataset, batch_size: int) -> tuple[int, int]:
    """(batches holding both labels, batches), reading `dataset["label"]` in order, batch by batch."""
    labels = list(dataset["label"])
    batches = [set(labels[i: i + batch_size]) for i in range(0, len(labels), batch_size)]
    return sum(len(b) == 2 for b in batches), len(batches)


def kto_class_weights(n_desirable: int, n_undesirable: int) -> tuple[float, float]:
    """`(desirable_weight, undesirable_weight)` for `KTOConfig`, following the KTO paper's Eq. 8.

    The paper asks for lambda_D * n_D / (lambda_U * n_U) in [1, 4/3]. If the counts already satisfy it, both
    weights stay 1.0. Otherwise one weight stays 1.0 and the other puts the ratio at 7/6, the band's middle:
    too few desirable rows -> lambda_D = (7/6) * n_U / n_D; too many -> lambda_U = n_D / ((7/6) * n_U).

    Raises:
        ValueError: a count is zero or negative (KTO needs both labels).
    """
    if n_desirable <= 0 or n_undesirable <= 0:
        raise ValueError(f"Both counts must be positive, got n_desirable={n_desirable}, "
                         f"n_undesirable={n_undesirable}: KTO needs rows of both labels.")
    ratio = n_desirable / n_undesirable
    if WEIGHT_BAND[0] <= ratio <= WEIGHT_BAND[1]:
        return 1.0, 1.0
    if ratio < WEIGHT_BAND[0]:
        return round(WEIGHT_TARGET / ratio, 4), 1.0
    return 1.0, round(ratio / WEIGHT_TARGET, 4)
