"""Load preference pairs and unpaired rows from common layouts, check every row, lose nothing silently.

The readers are in `helpers.data_io`, the per-row checks and layouts in `helpers.rows`; this module runs them over a
source and reports.

The row layouts accepted (detected per row: plain, conversational, UltraFeedback-binarized, PKU-SafeRLHF, SHP,
Axolotl, hh-rlhf; TRL's KTO format or ratings for unpaired rows) are listed in `helpers.rows`.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from pathlib import Path

from .data_io import (
    SUPPORTED,
    DataError,
    RowError,
    dataset_records,
    file_format,
    file_records,
    no_cycle_collection,
    write_jsonl,
)
from .env import KitError
from .rows import FIXES, HUB_ID, META_KEYS, ON_ERROR, _normalise, parse_label

__all__ = ["DataError", "load_preferences", "load_unpaired", "parse_label", "require_inputs",
           "require_notebook_inputs", "require_rows", "split_dataset", "write_jsonl"]

def require_inputs(paths, notebook: str) -> list[Path]:
    """Check that a notebook's inputs exist; stop at once with the notebook to run first if not.

    Raises:
        KitError: names every missing path and `notebooks/<notebook>.ipynb`.
    """
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise KitError(f"Missing input(s): {', '.join(missing)}. Run notebooks/{notebook}.ipynb first "
                       "with the same PROFILE and RUN_DIR, then run this notebook again.")
    return paths


# What each notebook reads from RUN_DIR, by the notebook that writes it ("rm_base"/"policy_base": the tiny models
# notebook 00 builds; hub models need nothing here). Checked in this order, so the first notebook to run is named.
NOTEBOOK_INPUTS = {
    "01_prepare_data": {"00_setup": ["rm_base"]},
    "02_train_reward_model": {"01_prepare_data": ["data/train.jsonl", "data/test.jsonl"], "00_setup": ["rm_base"]},
    "03_merge_value_head": {"01_prepare_data": ["data/test.jsonl"],
                            "02_train_reward_model": ["rm_adapter/adapter_model.safetensors",
                                                      "metrics/02_train_reward_model.json"]},
    "04_score_responses": {"01_prepare_data": ["data/test.jsonl"]},  # the merged model: ensure_merged_model
    "05_kto_unpaired": {"01_prepare_data": ["data/unpaired_train.jsonl", "data/unpaired_test.jsonl"],
                        "00_setup": ["policy_base"], "03_merge_value_head": ["metrics/03_merge_value_head.json"]},
    "06_rl_with_reward_model": {"01_prepare_data": ["data/train.jsonl", "data/test.jsonl"], "00_setup": ["policy_base"],
                                "03_merge_value_head": ["metrics/03_merge_value_head.json"]},
}


def require_notebook_inputs(notebook: str, run_dir, profile) -> None:
    """A notebook's whole pre-flight in one call: every input it reads (`NOTEBOOK_INPUTS`) exists in `run_dir`.

    Raises:
        KitError: from `require_inputs`, naming the missing paths and the notebook to run first.
    """
    for writer, names in NOTEBOOK_INPUTS[notebook].items():
        paths = [profile.model_path(n, run_dir) if n in ("rm_base", "policy_base") else Path(run_dir) / n
                 for n in names if n not in ("rm_base", "policy_base") or profile.is_local]
        require_inputs(paths, notebook=writer)


def _to_dataset(rows: list[dict], kind: str):
    from datasets import Dataset

    first = ["prompt", "chosen", "rejected"] if kind == "pairs" else ["prompt", "completion", "label"]
    present = {k for row in rows for k in row}
    columns = first + [k for k in ("margin", *META_KEYS) if k in present] + ["source_line"]
    return Dataset.from_dict({c: [row.get(c) for row in rows] for c in columns})


def _hub_records(source: str, split, limit, local: bool):
    """A Hub dataset name or a local dataset folder, through `datasets.load_dataset` (streamed with a limit)."""
    import datasets

    split = split or "train"
    where = "the local dataset folder" if local else "the Hugging Face Hub"
    try:
        if limit is None:
            dataset = datasets.load_dataset(source, split=split)
        else:  # stream: only the first `limit` rows are downloaded and read
            dataset = datasets.load_dataset(source, split=split, streaming=True).take(limit)
    except Exception as err:  # noqa: BLE001 - network, auth and missing-split errors come from several libraries
        hint = "" if local else " Offline, or a typo?"
        raise DataError(f"{source}: cannot load it from {where} ({type(err).__name__}: {err}).{hint} Give a local "
                        f"file instead: {SUPPORTED}.") from err
    return f"{'folder' if local else 'hub'}:{source}", "folder" if local else "hub", "", dataset_records(dataset)


def _read_records(source, split, limit):
    """-> (name, format, note, records) for a file, a folder, a `datasets.Dataset` or a Hub dataset name."""
    from datasets import Dataset, IterableDataset

    if isinstance(source, (Dataset, IterableDataset)):
        return "Dataset", "dataset", "", dataset_records(source)
    path = Path(source)
    if path.is_dir():
        return _hub_records(str(path), split, limit, local=True)
    if path.is_file():
        if file_format(path)[0] is None:
            raise DataError(f"{source}: unsupported file type {''.join(path.suffixes)!r}. Give one of: {SUPPORTED}.")
        return file_records(path)
    if path.suffix or not HUB_ID.match(str(source)):
        raise DataError(f"{source}: no such file. Give one of: {SUPPORTED}.")
    return _hub_records(str(source), split, limit, local=False)


def _check_rows(records, kind, on_error, split, limit, fmt, name, options):
    kept, dropped, layouts, seen, other_split = [], [], Counter(), {}, 0
    for unit, line, record, raw in itertools.islice(records, limit):
        try:
            if isinstance(record, RowError):
                raise record
            if not isinstance(record, dict):
                raise RowError("wrong_type", "(row)", f"expected a JSON object, got {type(record).__name__}")
            layout, row = _normalise(record, kind, seen, f"{unit} {line}", options)
        except RowError as err:
            message = f"{name}, {unit} {line}, field '{err.field}': {err}. Fix: {err.fix or FIXES[err.reason]}"
            if on_error == "raise":
                raise DataError(message) from None
            dropped.append({"file": name, "line": line, "unit": unit, "field": err.field,
                            "reason": err.reason, "message": message, "raw": _printable(raw)})
            continue
        if split is not None and fmt not in ("hub", "folder") and row.get("split") != split:
            other_split += 1
            continue
        layouts[layout] += 1
        kept.append({**row, "source_line": line})
    return kept, dropped, layouts, other_split


def _load(source, kind: str, on_error: str, rejected_path, split, limit, options):
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of rows or None, got {limit!r}")
    name, fmt, note, records = _read_records(source, split, limit)
    with no_cycle_collection():
        kept, dropped, layouts, other_split = _check_rows(records, kind, on_error, split, limit, fmt, name, options)
    report = {"file": name, "format": fmt, "kind": kind, "read": len(kept) + len(dropped),
              "kept": len(kept), "dropped": len(dropped),
              "dropped_by_reason": dict(Counter(d["reason"] for d in dropped)),
              "row_formats": dict(layouts), "first_errors": [d["message"] for d in dropped[:5]], "note": note}
    if split is not None:
        report.update(split=split, other_split=other_split)
    if limit is not None:
        report["limit"] = limit
    if rejected_path is not None:
        write_jsonl(dropped, rejected_path)
        report["rejected_path"] = str(rejected_path)
    return _to_dataset(kept, kind), report


def _printable(raw):
    """The raw row as it can be written back to JSON: lone surrogates and NaN shown, never crash the report."""
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def load_preferences(source, on_error: str = "report", rejected_path=None, split: str | None = None,
                     limit: int | None = None, margin: bool = False):
    """Load preference pairs from a file, a folder, a `datasets.Dataset` or a Hub dataset, and check every row.

    Args:
        source: a .jsonl / .json / .csv / .parquet path (each may be gzipped), a dataset folder or a Hub dataset
            name (both read by `datasets.load_dataset`), or a `datasets.Dataset`.
        on_error: "report" keeps the good rows and reports the rest; "raise" stops at the first bad row.
        rejected_path: in report mode, write every dropped row here as JSONL
            {file, line, unit, field, reason, message, raw}.
        split: keep only rows whose `split` column equals it (for a folder or Hub dataset: the split to load).
        limit: read at most this many rows (a folder or Hub dataset is then streamed, not downloaded whole).
        margin: add TRL's optional `margin` column (RewardTrainer's loss becomes -logsigmoid(r_c - r_r - margin)):
            a `margin` field, else score_chosen - score_rejected (UltraFeedback) or the preferred score minus
            the other (SHP). Rows without one are dropped as missing_field. Off unless asked for.

    Returns:
        (dataset, report): the kept rows as a `Dataset` (prompt, chosen, rejected in TRL's conversational
        format, margin if asked, the metadata columns found, `source_line`), and a report dict: file, format,
        read, kept, dropped, dropped_by_reason, row_formats, first_errors, note (what the reader noticed about
        the file as a whole: empty, gzipped, rows inside a wrapping object, ...). Always kept + dropped == read;
        with `split`, rows of other splits are counted apart (other_split).

    Raises:
        DataError: a bad row in "raise" mode, or a file that cannot be read at all.
        ValueError: `on_error` is not "report" or "raise", or `limit` is not a positive int.
    """
    return _load(source, "pairs", on_error, rejected_path, split, limit, {"margin": margin})


def load_unpaired(source, on_error: str = "report", rejected_path=None, split: str | None = None,
                  limit: int | None = None, rating_threshold: float | None = None):
    """Load unpaired (prompt, completion, label) rows, as `load_preferences` loads pairs.

    Args:
        rating_threshold: for rows with a numeric `rating` and no `label` (thumbs or star ratings): ratings at or
            above it are desirable. Without it such rows are dropped (missing_field 'label').

    Returns:
        (dataset, report): prompt, completion (one assistant message), label (bool), metadata, source_line.
    """
    return _load(source, "unpaired", on_error, rejected_path, split, limit, {"rating_threshold": rating_threshold})


def require_rows(report: dict, what: str = "pairs") -> None:
    """Stop at once when a loader kept nothing: say what was read and why none of it is usable.

    Raises:
        DataError: names the file, the counts, the reasons and the first error.
    """
    if report["kept"]:
        return
    if report["read"] == 0:
        why = f"no rows were read ({report.get('note') or 'the source holds no rows'})"
    elif report.get("other_split"):
        why = f"{report['read']} rows read, none in split {report.get('split')!r}"
    else:
        why = (f"all {report['read']} rows read were dropped {report['dropped_by_reason']}; the first: "
               f"{report['first_errors'][0]}")
    listed = f" (every dropped row is listed in {report['rejected_path']})" if report.get("rejected_path") else ""
    raise DataError(f"{report['file']}: no usable {what}: {why}. Fix the file{listed}, or point the notebook at "
                    "another one.")


def split_dataset(dataset, test_size: float = 0.2, seed: int = 0) -> dict:
    """{"train": ..., "test": ...}: by the `split` column when it holds both and only train/test, else by prompt.

    Splitting by prompt (shuffled with `seed`) keeps every prompt on one side, so test prompts stay unseen.
    The returned datasets carry a `split` column either way.
    """
    splits = list(dataset["split"]) if "split" in dataset.column_names else []
    if set(splits) != {"train", "test"}:
        keys = [json.dumps(p, ensure_ascii=False, sort_keys=True) for p in dataset["prompt"]]
        prompts = sorted(set(keys))
        random.Random(seed).shuffle(prompts)
        held_out = set(prompts[: round(test_size * len(prompts))])
        splits = ["test" if k in held_out else "train" for k in keys]
        if "split" in dataset.column_names:
            dataset = dataset.remove_columns("split")
        dataset = dataset.add_column("split", splits)
    return {name: dataset.select([i for i, s in enumerate(splits) if s == name])
            for name in ("train", "test")}


def heldout_subset(dataset, limit: int, seed: int = 0, what: str = "held-out rows"):
    """The rows a notebook evaluates on: all of them, or `limit` drawn at random (with `seed`) when `limit` > 0.

    On a CPU every held-out row costs a real model seconds per evaluation pass; the `smol` profile caps them
    (`profile.heldout_limit`). The draw is stratified by the columns `source` and `label` where they exist, each
    group kept in proportion and at least once, so a per-label or per-source measure still has rows of every kind.
    Says what it kept, so no row is left out silently.
    """
    if not limit or limit >= len(dataset):
        return dataset
    keys = [c for c in ("source", "label") if c in dataset.column_names]
    groups: dict[tuple, list[int]] = {}
    for index, row in enumerate(zip(*(dataset[c] for c in keys), strict=True) if keys else [()] * len(dataset)):
        groups.setdefault(tuple(row), []).append(index)
    rng = random.Random(seed)
    share = {g: max(1, round(limit * len(rows) / len(dataset))) for g, rows in groups.items()}
    while sum(share.values()) > limit and any(n > 1 for n in share.values()):
        share[max(share, key=share.get)] -= 1
    kept = sorted(i for g, rows in groups.items() for i in rng.sample(rows, min(share[g], len(rows))))
    print(f"evaluating {len(kept)} of {len(dataset)} {what}, drawn at random with seed {seed}"
          + (f" within each {' and '.join(keys)}" if keys else "")
          + f" (profile heldout_limit={limit}: each pass over all of them costs minutes on a CPU; 0 keeps all)")
    return dataset.select(kept)
