"""Length audit: count tokens exactly as TRL's trainers will, and list what they would drop or cut.

`RewardTrainer` renders `prompt + chosen` and `prompt + rejected` through the chat template and then
silently DROPS every pair with either side longer than `max_length` (trl/trainer/reward_trainer.py,
`_prepare_dataset`). `KTOTrainer` truncates long rows from the right and drops the rows whose prompt
alone fills `max_length`. This module counts both, without training anything.

Speed: conversations are rendered with `apply_chat_template(tokenize=False)` and tokenized in batches by
the fast tokenizer with `add_special_tokens=False`, which is what `apply_chat_template(tokenize=True)` does
inside (transformers' tokenization_utils_base.py), so the counts are the same.
"""

from __future__ import annotations

import math

import numpy as np

from .data_io import no_cycle_collection

SUGGEST_MULTIPLE, SUGGEST_COVERAGE = 64, 0.99
SUGGESTION_RULE = (f"smallest multiple of {SUGGEST_MULTIPLE} that keeps at least {SUGGEST_COVERAGE:.0%} of "
                   "pairs whole (both sides <= max_length)")


def _column(dataset, name: str, default=None) -> list:
    if name in dataset.column_names:
        return dataset.with_format("arrow")[name].to_pylist()  # one Arrow conversion, not a loop over rows
    return [default] * len(dataset)


def _names(dataset) -> list:
    """Each row's name in a report: its `id`, else its line in the source file, else its position."""
    ids, lines = _column(dataset, "id"), _column(dataset, "source_line")
    return [i if i is not None else f"line {n}" if n is not None else f"row {k}"
            for k, (i, n) in enumerate(zip(ids, lines, strict=True))]


def _encode(tokenizer, items: list, batch_size: int, **template_kwargs):
    """Yield the token ids of each conversation (message list) or plain string, tokenized in batches.

    Items come out as lists of ids, or as `tokenizers.Encoding`s (same `len()`, ids in `.ids`): when the
    tokenizer's backend has no truncation or padding set, it is called directly, which is what
    `tokenizer(texts)` does minus building the attention masks.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    direct = backend is not None and backend.truncation is None and backend.padding is None
    for start in range(0, len(items), batch_size):
        chunk = items[start: start + batch_size]
        conversational = isinstance(chunk[0], list)
        texts = chunk
        if conversational:  # TRL: a chat template writes its own special tokens; plain text gets them added
            texts = tokenizer.apply_chat_template(chunk, tokenize=False, **template_kwargs)
        if direct:
            yield from backend.encode_batch_fast(texts, add_special_tokens=not conversational)
        else:
            yield from tokenizer(texts, add_special_tokens=not conversational)["input_ids"]


def _ids(encoded) -> list[int]:
    return encoded if isinstance(encoded, list) else encoded.ids


def _sequences(dataset, tokenizer, side: str) -> list:
    """What TRL tokenizes for one side: prompt + answer (plain text gets EOS appended, as TRL does)."""
    prompts, answers = _column(dataset, "prompt"), _column(dataset, side)
    if answers and isinstance(answers[0], str):
        eos = tokenizer.eos_token or ""
        answers = [a if a.endswith(eos) else a + eos for a in answers]
    return [(p or type(a)()) + a for p, a in zip(prompts, answers, strict=True)]


def _lengths_and_heads(dataset, tokenizer, side: str, batch_size: int, head: int | None):
    """Tokens per row of one side, and the first `head` ids of the rows with at least `head` tokens."""
    lengths, heads = [], {}
    for i, encoded in enumerate(_encode(tokenizer, _sequences(dataset, tokenizer, side), batch_size)):
        lengths.append(len(encoded))
        if head is not None and lengths[-1] >= head:
            heads[i] = _ids(encoded)[:head]
    return lengths, heads


def token_lengths(dataset, tokenizer, batch_size: int = 1000) -> dict[str, list[int]]:
    """Tokens per pair and side, as TRL's `RewardTrainer` counts them.

    Returns:
        {"chosen_tokens": [...], "rejected_tokens": [...]}, one entry per row of `dataset`.
    """
    return {f"{side}_tokens": _lengths_and_heads(dataset, tokenizer, side, batch_size, None)[0]
            for side in ("chosen", "rejected")}


def _split_names(splits: list) -> list[str]:
    # train first, then test, then any other name; "all" last
    named = {s for s in splits if s is not None}
    return sorted(named, key=lambda s: (s != "train", s != "test", s)) + ["all"]


def _stats(values: list[int], splits: list, split: str) -> dict:
    arr = np.asarray([v for v, s in zip(values, splits, strict=True) if split in ("all", s)])
    if arr.size == 0:
        return {"n": 0}
    return {"n": int(arr.size), "min": int(arr.min()), "median": float(np.median(arr)),
            "mean": round(float(arr.mean()), 1), "p95": round(float(np.percentile(arr, 95)), 1),
            "max": int(arr.max())}


def suggest_max_length(pair_lengths, coverage: float = SUGGEST_COVERAGE,
                       multiple: int = SUGGEST_MULTIPLE) -> int:
    """The smallest multiple of `multiple` that is >= the longer side of `coverage` of the pairs."""
    ordered = sorted(pair_lengths)
    if not ordered:
        return multiple
    needed = ordered[max(0, math.ceil(coverage * len(ordered)) - 1)]
    return max(multiple, math.ceil(needed / multiple) * multiple)


def audit_lengths(dataset, tokenizer, max_length: int, batch_size: int = 1000) -> dict:
    """Token-length audit of preference pairs at `max_length`, counted the way `RewardTrainer` counts.

    Args:
        dataset: pairs (`prompt`, `chosen`, `rejected`; conversational or plain), as `load_preferences`
            returns them.
        tokenizer: the reward model's fast tokenizer, with its chat template.
        max_length: the `RewardConfig.max_length` you will train with.

    Returns:
        A dict: `stats` per split and side (n, min, median, mean, p95, max); `over_max_length` (count) and
        `over_max_length_rows` (id, split, chosen/rejected tokens): the pairs TRL would silently drop;
        `identical_after_truncation(_rows)`: pairs whose two sides agree on the first `max_length` tokens
        (a trainer that truncates instead of dropping would learn nothing from them);
        `suggested_max_length` with `suggestion_rule`; `lengths`: per-row chosen/rejected tokens and split.
    """
    with no_cycle_collection():  # ~5% of the audit, measured
        return _audit_lengths(dataset, tokenizer, max_length, batch_size)


def _audit_lengths(dataset, tokenizer, max_length: int, batch_size: int) -> dict:
    chosen, chosen_heads = _lengths_and_heads(dataset, tokenizer, "chosen", batch_size, max_length)
    rejected, rejected_heads = _lengths_and_heads(dataset, tokenizer, "rejected", batch_size, max_length)
    lengths = {"chosen_tokens": chosen, "rejected_tokens": rejected}
    ids, splits = _names(dataset), _column(dataset, "split", "all")
    over = [i for i, (c, r) in enumerate(zip(chosen, rejected, strict=True)) if max(c, r) > max_length]
    # identical on the first max_length tokens: both sides have at least that many, and the heads agree
    same = [i for i in over if i in chosen_heads and chosen_heads[i] == rejected_heads.get(i)]

    def describe(i):
        return {"id": ids[i], "split": splits[i],
                "chosen_tokens": chosen[i], "rejected_tokens": rejected[i]}

    sides = ("chosen", "rejected")
    stats = {split: {side: _stats(lengths[f"{side}_tokens"], splits, split) for side in sides}
             for split in _split_names(splits)}
    longer = [max(c, r) for c, r in zip(chosen, rejected, strict=True)]
    return {"max_length": max_length, "pairs": len(chosen), "stats": stats,
            "over_max_length": len(over), "over_max_length_rows": [describe(i) for i in over],
            "identical_after_truncation": len(same),
            "identical_after_truncation_rows": [describe(i) for i in same],
            "suggested_max_length": suggest_max_length(longer), "suggestion_rule": SUGGESTION_RULE,
            "lengths": {**lengths, "split": splits}}


def _prefix_length(ids: list[int], other: list[int]) -> int:
    if other[: len(ids)] == ids:  # the usual case, checked at C speed
        return len(ids)
    same = (i for i, (a, b) in enumerate(zip(ids, other, strict=False)) if a != b)
    return next(same, min(len(ids), len(other)))


def audit_unpaired(dataset, tokenizer, max_length: int, batch_size: int = 1000) -> dict:
    """Token-length audit of unpaired KTO rows at `max_length`, counted the way `KTOTrainer` counts.

    KTOTrainer tokenizes the prompt with the generation prompt and the whole conversation; the prompt is their
    common prefix. Rows whose prompt alone reaches `max_length` are dropped; longer rows are truncated.

    Returns:
        A dict: `stats` per split of total tokens; `prompt_over_max_length` (count) and its `_rows` (id,
        split, label, prompt_tokens): the rows TRL drops; `truncated` (count of rows cut from the right);
        `lengths`: per-row prompt and total tokens.
    """
    with no_cycle_collection():  # ~5% of the audit, measured
        return _audit_unpaired(dataset, tokenizer, max_length, batch_size)


def _audit_unpaired(dataset, tokenizer, max_length: int, batch_size: int) -> dict:
    prompts, completions = _column(dataset, "prompt"), _column(dataset, "completion")
    conversational = bool(completions) and isinstance(completions[0], list)
    if conversational:
        prompt_ids = [_ids(e) for e in _encode(tokenizer, prompts, batch_size, add_generation_prompt=True)]
    else:
        eos = tokenizer.eos_token or ""
        completions = [c if c.endswith(eos) else c + eos for c in completions]
        prompt_ids = [_ids(e) for e in _encode(tokenizer, prompts, batch_size)]
    full = [p + c for p, c in zip(prompts, completions, strict=True)]
    full_ids = [_ids(e) for e in _encode(tokenizer, full, batch_size)]
    prompt_tokens = [_prefix_length(p, f) for p, f in zip(prompt_ids, full_ids, strict=True)]
    total = [len(f) for f in full_ids]
    ids, splits, labels = _names(dataset), _column(dataset, "split", "all"), _column(dataset, "label")
    over = [i for i, n in enumerate(prompt_tokens) if n >= max_length]
    stats = {split: _stats(total, splits, split) for split in _split_names(splits)}
    return {"max_length": max_length, "rows": len(total), "stats": stats, "prompt_over_max_length": len(over),
            "prompt_over_max_length_rows": [{"id": ids[i], "split": splits[i], "label": labels[i],
                                             "prompt_tokens": prompt_tokens[i]} for i in over],
            "truncated": sum(t > max_length for t in total),
            "lengths": {"prompt_tokens": prompt_tokens, "total_tokens": total, "split": splits}}
