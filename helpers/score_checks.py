"""The scoring CLI's checks: of each input row (why it cannot be scored), and of the command line before the model
loads (the input readable, the output folder writable, the model folder or Hub id usable)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .rows import FIXES, LONE_SURROGATE


def _surrogate(text: str, field: str) -> str | None:
    """Why a text cannot be tokenized or written as UTF-8 (a lone surrogate escape), or None."""
    match = None if text.isascii() else LONE_SURROGATE.search(text)
    return None if match is None else (f"field '{field}': a lone surrogate {ascii(match.group())} at character "
                                       f"{match.start()}, not valid Unicode: {FIXES['invalid_unicode']}")


def _check_messages(messages: list, field: str) -> str | None:
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            return f"field '{field}': message {i} is a {type(msg).__name__}, not an object with 'role' and 'content'"
        for key in ("role", "content"):
            if key not in msg:
                return f"field '{field}': message {i} has no '{key}'"
            if not isinstance(msg[key], str):
                return f"field '{field}': message {i}: '{key}' must be a string, got {type(msg[key]).__name__}"
            if problem := _surrogate(msg[key], f"{field}[{i}].{key}"):
                return problem
    return None


def _check(row) -> str | None:
    """The reason a row cannot be scored, or None."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    for field in ("prompt", "response"):
        value = row.get(field)
        if value is None:
            return f"field '{field}': missing"
        if isinstance(value, str):
            problem = f"field '{field}': empty text" if not value.strip() else _surrogate(value, field)
        elif isinstance(value, list) and value:
            problem = _check_messages(value, field)
        else:
            problem = f"field '{field}': expected a string or a list of messages, got {type(value).__name__}"
        if problem:
            return problem
    row_id = row.get("id")  # written to the output as it is: it must be encodable as UTF-8
    return _surrogate(row_id if isinstance(row_id, str) else json.dumps(row_id, ensure_ascii=False), "id")


def parse_line(raw: bytes) -> tuple[dict | None, str | None]:
    """(row, None) for a good input line, (None, reason) for a bad one."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        return None, f"undecodable bytes ({err.reason})"
    except json.JSONDecodeError as err:
        return None, f"malformed JSON ({err.msg})"
    reason = _check(row)
    return (None, reason) if reason else (row, None)


def check_arguments(args) -> str | None:
    """What is wrong with the command line, or None; checked before the model is loaded.

    Sets `args.load_from`: the folder or Hub id to load (a Hub id's cached copy when the Hub cannot be reached).
    """
    if args.batch_size < 1:
        return f"--batch-size must be at least 1, got {args.batch_size}"
    if args.max_length is not None and args.max_length < 1:
        return f"--max-length must be at least 1, got {args.max_length}"
    return _check_paths(args) or _check_model(args)


def _check_paths(args) -> str | None:
    from .env import probe_writable

    if not args.input.is_file():
        return f"--input {args.input}: no such file" + (" (it is a folder)" if args.input.is_dir() else "")
    try:
        with args.input.open("rb") as f:
            f.read(1)
    except OSError as err:
        return f"--input {args.input}: cannot read it ({err.strerror or err}); check its permissions and its disk"
    if args.output.is_dir():
        return f"--output {args.output} is a folder: give a file path, e.g. {args.output / 'scores.jsonl'}"
    if args.output.resolve() == args.input.resolve():
        return f"--output is the input file ({args.input}): give another path; the input is never written to"
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        probe_writable(args.output.parent)
    except OSError as err:
        return f"--output: cannot write in {args.output.parent} ({err.strerror or err}); choose a writable folder"
    return None


def _check_model(args) -> str | None:
    args.load_from = args.model
    model = Path(args.model)
    if not model.exists():
        if model.is_absolute() or args.model.startswith(".") or len(model.parts) > 2:
            return f"--model {args.model}: no such folder; give notebook 03's RUN_DIR/rm_merged (or its copy)"
        problem, cached = _check_hub_model(args.model)
        if problem or cached is None:
            return problem
        args.load_from, model = cached, Path(cached)
    return _check_model_folder(args, model)


def _check_hub_model(model_id: str) -> tuple[str | None, str | None]:
    """(problem, None), (None, None) when the Hub has the model, or (None, its cached folder) when the Hub cannot be
    reached: one quick request, so an offline machine fails in a second instead of retrying for minutes."""
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    why = "HF_HUB_OFFLINE is set"
    try:
        if not constants.HF_HUB_OFFLINE:
            HfApi().model_info(model_id, timeout=10)
            return None, None
    except HFValidationError as err:
        return f"--model {model_id}: no such folder, and not a Hugging Face Hub id ({err})", None
    except RepositoryNotFoundError:
        return (f"--model {model_id}: no such folder here, and no such model on the Hugging Face Hub (if it is "
                "private or gated: `hf auth login`, or set HF_TOKEN)"), None
    except Exception as err:  # noqa: BLE001 - the HTTP client's connection errors differ by huggingface_hub version
        why = f"the Hub cannot be reached: {type(err).__name__}: {err}"
    try:
        folder = snapshot_download(model_id, local_files_only=True)
    except LocalEntryNotFoundError:
        return (f"--model {model_id}: not a local folder, and not in the Hugging Face cache ({why}). Connect and "
                f"run again, download it first (`hf download {model_id}`), or give a local folder (notebook 03's "
                "RUN_DIR/rm_merged)"), None
    print(f"--model {model_id}: {why}; using the cached copy {folder}", file=sys.stderr)
    return None, folder


def _check_model_folder(args, model: Path) -> str | None:
    from .env import KitError, require_safetensors

    if not (model / "config.json").is_file():
        return f"--model {args.model}: not a merged reward model (no config.json); give notebook 03's rm_merged"
    try:
        config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return (f"--model {args.model}: config.json is not valid JSON ({err}): the folder is damaged or a copy was "
                "cut short; copy notebook 03's rm_merged again")
    architectures = (config.get("architectures") if isinstance(config, dict) else None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return (f"--model {args.model}: not a reward model (architectures {architectures}); give notebook 03's "
                "rm_merged, not a base or policy model")
    # no id2label in config.json: transformers' default of 2 labels (configuration_utils.py, PreTrainedConfig)
    labels = len(config["id2label"]) if config.get("id2label") else config.get("num_labels") or 2
    if labels != 1:
        return (f"--model {args.model}: a classifier with {labels} labels (config.json id2label; none means "
                "transformers' default of 2); a reward model has exactly one (num_labels=1): give notebook 03's "
                "rm_merged")
    positions = config.get("max_position_embeddings")
    if args.max_length and positions and args.max_length > positions:
        return (f"--max-length {args.max_length} is above the model's max_position_embeddings {positions} "
                f"(config.json): it never saw later positions; give at most {positions}, or leave --max-length out")
    try:
        require_safetensors(model, "reward model")
    except KitError as err:
        return f"--model {err}"
    if not any((model / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        return (f"--model {args.model}: no model.safetensors (nor model.safetensors.index.json): the weights are "
                "missing (a copy cut short?); copy notebook 03's rm_merged again")
    return None
