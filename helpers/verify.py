"""The verifier of notebook 03: is a saved reward model usable by someone else, with plain transformers?

Each check returns "ok" or what is wrong and how to fix it; `verify_reward_model` collects them and, in
strict mode, raises with every failure listed. `fresh_process_scores` re-scores in a new Python process
that imports only torch and transformers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from .env import quiet_transformers
from .merge import MANIFEST, REQUIRED_FILES, VALUE_HEAD_FILE, RewardModelError, adapter_head, chat_template_sha256
from .score import score_conversations


def _check_files(path: Path, required) -> str:
    missing = [name for name in required if not any((path / alt).exists() for alt in name.split("|"))]
    if not missing:
        return "ok"
    hints = {MANIFEST: "write_reward_head_manifest(...)", "tokenizer.json": "tokenizer.save_pretrained(path)",
             "tokenizer_config.json": "tokenizer.save_pretrained(path)",
             f"llamafactory/{VALUE_HEAD_FILE}":
                 "export_llamafactory(...): LLaMA-Factory keeps its value head only in this file"}
    default = "model.save_pretrained(path) / export_llamafactory(...)"
    fixes = sorted({hints.get(name, default) for name in missing})
    return f"missing in {path}: {', '.join(missing)}. Write them with {'; '.join(fixes)}."


def _load_checked(path: Path, report: dict, load_kwargs: dict):
    """Plain from_pretrained; ignore_mismatched_sizes only so a wrong shape is reported, not raised."""
    from transformers import AutoModelForSequenceClassification

    try:
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path, use_safetensors=True, output_loading_info=True, ignore_mismatched_sizes=True, **load_kwargs)
    except (OSError, ValueError, RuntimeError) as err:
        report["checks"]["loading"] = f"AutoModelForSequenceClassification.from_pretrained failed: {err}"
        return None
    report["missing_keys"] = sorted(info["missing_keys"])
    report["unexpected_keys"] = sorted(info["unexpected_keys"])
    shapes = sorted(f"{k} (checkpoint {list(a)}, model {list(b)})" for k, a, b in info["mismatched_keys"])
    found = (("missing (initialised at random)", report["missing_keys"]),
             ("unexpected (ignored)", report["unexpected_keys"]), ("wrong shape", shapes))
    problems = [f"{what}: {keys}" for what, keys in found if keys]
    report["checks"]["loading"] = "ok" if not problems else (
        f"loading left keys {'; '.join(problems)}. Save the merged AutoModelForSequenceClassification "
        "(num_labels=1) with save_pretrained, not the causal LM or a bare state_dict.")
    return model.eval()


def _check_head(model, adapter_dir, report: dict) -> str:
    hidden, head = model.config.hidden_size, getattr(model, "score", None)
    if head is None:
        return f"{type(model).__name__} has no `score` head: not a TRL/OpenRLHF-style reward model."
    report["head_shape"] = list(head.weight.shape)
    if report["head_shape"] != [1, hidden]:
        return (f"score.weight has shape {report['head_shape']}; a reward model has one output: "
                f"[1, {hidden}]. Load the base with "
                "AutoModelForSequenceClassification.from_pretrained(..., num_labels=1).")
    if "score.weight" in report["missing_keys"]:
        return ("score.weight is not in the checkpoint, so from_pretrained initialised it at random (the "
                "'newly initialized' / MISSING warning at load), a new one at every load. Merge an "
                "adapter trained with task_type=\"SEQ_CLS\" and save the AutoModelForSequenceClassification.")
    if adapter_dir is None:
        return "ok"
    saved = adapter_head(adapter_dir)
    if saved is None:
        return (f"the adapter {adapter_dir} holds no score head: it was trained without "
                "task_type=\"SEQ_CLS\", so the head merged here is the random one the base got at load time "
                "(the 'newly initialized: score.weight' warning: expected when creating a reward model, a bug "
                "in a trained one). "
                "Retrain with LoraConfig(..., task_type=\"SEQ_CLS\").")
    merged = head.weight.detach().cpu()
    if saved.shape != merged.shape:
        return (f"score.weight in {adapter_dir} is {list(saved.shape)}, but this model's head is "
                f"{list(merged.shape)} (hidden_size {hidden}): the adapter was trained on another base, or its head "
                "was changed. Merge the adapter into the base it was trained on (adapter_config.json's "
                "base_model_name_or_path), or pass the adapter this model was merged from.")
    expected = saved.to(merged.dtype).float()  # a 16-bit merge rounds the fp32 head once: compare it rounded alike
    if not torch.allclose(merged.float(), expected, rtol=1e-3, atol=1e-6):
        return (f"score.weight differs from the head saved in {adapter_dir} (max |diff| "
                f"{(merged.float() - expected).abs().max().item():.3g}): it was re-initialised or replaced. "
                "Merge again: PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().")
    return "ok"


def _check_pad(model, tokenizer) -> str:
    pad, eos = model.config.pad_token_id, model.config.eos_token_id
    if pad is None:
        return ("config.json has no pad_token_id, so in a batch the model cannot find the last real token. "
                "Set model.config.pad_token_id = tokenizer.pad_token_id before save_pretrained.")
    if pad == eos or (isinstance(eos, list) and pad in eos):
        return (f"pad_token_id {pad} is the EOS id: an answer ending in EOS reads as padding there. Use a "
                "dedicated pad token (helpers.train.prepare_reward_tokenizer).")
    if tokenizer is not None and tokenizer.pad_token_id != pad:
        return (f"config.json pads with id {pad} but the tokenizer with {tokenizer.pad_token_id}: save the "
                "tokenizer the model was trained with (RUN_DIR/rm_adapter) beside it.")
    return "ok"


def _load_tokenizer(path: Path, checks: dict):
    from transformers import AutoTokenizer

    if not (path / "tokenizer_config.json").exists():
        checks["tokenizer"] = (f"no tokenizer in {path}: save it with tokenizer.save_pretrained(path). It "
                               "carries the chat template and pad token every score depends on.")
        return None
    tokenizer = AutoTokenizer.from_pretrained(path)
    checks["tokenizer"] = "ok" if tokenizer.chat_template else (
        f"the tokenizer in {path} has no chat template: save the one from RUN_DIR/rm_adapter beside the "
        "model.")
    return tokenizer


def _check_manifest(path: Path, report: dict, tokenizer) -> str:
    manifest = json.loads((path / MANIFEST).read_text())
    template = chat_template_sha256(tokenizer) if tokenizer is not None else None
    pairs = (("head shape", manifest["head"]["shape"], report["head_shape"]),
             ("pad_token_id", manifest["pad_token_id"], report["pad_token_id"]),
             ("chat template sha256", manifest["chat_template_sha256"], template))
    wrong = [f"{name}: manifest {said!r}, files {found!r}" for name, said, found in pairs
             if found is not None and said != found]
    return "ok" if not wrong else f"{MANIFEST} disagrees with the files ({'; '.join(wrong)}): write it again."


def verify_reward_model(path, probes: list[list[dict]], adapter_dir=None, strict: bool = True,
                        required=REQUIRED_FILES, **load_kwargs) -> dict:
    """Check a saved reward model the way someone else will load it: plain transformers, no helpers.

    Checks, in `report["checks"]`: `files`; `loading` (plain `AutoModelForSequenceClassification.
    from_pretrained`: no missing, unexpected or mis-shaped key); `tokenizer` (with chat template); `head`
    ([1, hidden], from the checkpoint, equal to the adapter's head when `adapter_dir` is given); `pad`;
    `manifest` (when present); `probes` (finite scores). A random head that was *saved* (merged from an
    adapter without one) loads without a warning: only its adapter shows it, so pass `adapter_dir`.

    Args:
        path: the folder `save_pretrained` wrote.
        probes: a few conversations (message lists) to score.
        adapter_dir: the adapter the model was merged from.
        strict: raise when a check fails (default); False only reports.
        required: files that must exist; default the kit's layout, `MODEL_FILES` for a bare HF folder.
        load_kwargs: for `from_pretrained`, e.g. `dtype=torch.float16, device_map="auto"` for an 8B model on a T4.

    Returns:
        {"path", "ok", "checks", "missing_keys", "unexpected_keys", "head_shape", "pad_token_id",
        "probe_scores"}; each check is "ok" or what is wrong and how to fix it.

    Raises:
        RewardModelError: in strict mode, listing every failed check.
    """
    path = Path(path)
    report = {"path": str(path), "ok": False, "checks": {"files": _check_files(path, required)},
              "missing_keys": [], "unexpected_keys": [], "head_shape": None, "pad_token_id": None,
              "probe_scores": []}
    checks = report["checks"]
    model = _load_checked(path, report, load_kwargs) if (path / "config.json").exists() else None
    tokenizer = _load_tokenizer(path, checks)
    if model is not None:
        checks["head"] = _check_head(model, adapter_dir, report)
        report["pad_token_id"], checks["pad"] = model.config.pad_token_id, _check_pad(model, tokenizer)
        if tokenizer is not None and checks["pad"] == "ok":
            report["probe_scores"] = score_conversations(model, tokenizer, probes).tolist()
            bad = int((~np.isfinite(report["probe_scores"])).sum())
            checks["probes"] = "ok" if not bad else (f"{bad} of {len(probes)} probe scores are NaN/inf: the "
                                                     "weights are broken (an fp16 overflow in the merge?).")
    if (path / MANIFEST).exists():
        checks["manifest"] = _check_manifest(path, report, tokenizer)
    report["ok"] = model is not None and all(value == "ok" for value in checks.values())
    if strict and not report["ok"]:
        failed = "\n".join(f"- {name}: {value}" for name, value in checks.items() if value != "ok")
        raise RewardModelError(f"{path} is not a usable reward model:\n{failed}")
    return report


_FRESH = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
path, load = sys.argv[1], json.loads(sys.argv[2])
probes = json.loads(sys.stdin.read())
if "dtype" in load:
    load["dtype"] = getattr(torch, load["dtype"])
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, **load).eval()
with torch.no_grad():
    ids = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=False) for c in probes]
    scores = [model(torch.tensor([x], device=model.device)).logits[0, 0].item() for x in ids]
imported = sorted(m for m in sys.modules if m.split(".")[0] == "helpers")
print(json.dumps({"scores": scores, "helpers_imported": imported}))
"""


def fresh_process_scores(path, probes: list[list[dict]], timeout: int = 900, dtype: torch.dtype | None = None,
                         device_map: str | None = None) -> np.ndarray:
    """Score `probes` in a new Python process that imports only torch and transformers, as a stranger would.

    `dtype` and `device_map` go to its `from_pretrained` (an 8B model on a T4: float16, "auto").

    Raises:
        RewardModelError: the process failed (its stderr is in the message) or imported `helpers`.
    """
    load = {k: v for k, v in (("dtype", str(dtype).removeprefix("torch.") if dtype else None),
                              ("device_map", device_map)) if v is not None}
    done = subprocess.run([sys.executable, "-c", _FRESH, str(path), json.dumps(load)], input=json.dumps(probes),
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RewardModelError(f"A fresh Python with only transformers could not score {path}:\n"
                               f"{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["helpers_imported"]:
        raise RewardModelError(f"The fresh process imported {result['helpers_imported']}: not a clean check.")
    return np.asarray(result["scores"])
