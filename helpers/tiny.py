"""Offline tiny models for the `tiny` profile, built from config on this machine in seconds.

* `tiny-llama3`: a LLaMA-3-style decoder (`LlamaConfig`) with a byte-level BPE tokenizer trained on the
  kit's own text and LLaMA-3's special tokens. The reward-model base. Like Meta-Llama-3-8B it is a *base*
  model: no chat template, EOS `<|end_of_text|>`, no pad token, BOS added by the tokenizer itself.
* `tiny-qwen2`: a Qwen2-style causal LM with a ChatML tokenizer. The KTO policy.

Same seed -> same tokenizer and weights (checked by `state_checksum`). An optional causal-LM warm-up on
the kit's *train* split gives the models some language statistics, so the later lessons (reward
accuracy, generations judged by the RM) measure something rather than noise.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from .chat import (  # noqa: F401 (re-exported)
    CHATML_CHAT_TEMPLATE,
    CHATML_SPECIAL_TOKENS,
    LLAMA3_CHAT_TEMPLATE,
    LLAMA3_PAD_TOKEN,
    LLAMA3_SPECIAL_TOKENS,
)
from .env import KIT_ROOT

DATA_FILES = ("preferences.jsonl", "unpaired.jsonl")


def kit_texts(split: str = "train", data_dir: Path | None = None) -> list[list[dict]]:
    """The kit's conversations of one split, as message lists (a pair gives two: chosen and rejected).

    Only the train split feeds tokenizers and warm-up, so test text stays unseen.
    """
    data_dir = data_dir or KIT_ROOT / "data"
    conversations = []
    for name in DATA_FILES:
        for line in (data_dir / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("split") != split:
                continue
            answers = [row[k] for k in ("chosen", "rejected", "completion") if k in row]
            conversations += [[{"role": "user", "content": row["prompt"]},
                               {"role": "assistant", "content": a}] for a in answers]
    return conversations


def build_tokenizer(texts: list[str], style: str = "llama3", vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` with LLaMA-3 ("llama3") or ChatML ("chatml") specials.

    "llama3" copies what Meta-Llama-3-8B's *base* tokenizer does, quirks included: BOS `<|begin_of_text|>` added
    to every encoded text, EOS `<|end_of_text|>` (the chat template ends turns with `<|eot_id|>` instead), no
    pad token and no chat template (`helpers.train.prepare_reward_tokenizer` adds both). "chatml" is an
    instruct-style tokenizer with its template, like the policy of notebook 05.
    """
    if style not in ("llama3", "chatml"):
        raise ValueError(f"style must be 'llama3' or 'chatml', got {style!r}")
    special = LLAMA3_SPECIAL_TOKENS if style == "llama3" else CHATML_SPECIAL_TOKENS
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    if style == "llama3":
        bos = "<|begin_of_text|>"
        bpe.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, bpe.token_to_id(bos))])
        return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=bos, eos_token="<|end_of_text|>")
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHATML_CHAT_TEMPLATE)


def _model_config(style: str, tokenizer, hidden: int, layers: int):
    common = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=3 * hidden,
                  num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=1024, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    if style == "llama3":
        return LlamaForCausalLM, LlamaConfig(bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False,
                                             rope_theta=500000.0, **common)
    return Qwen2ForCausalLM, Qwen2Config(tie_word_embeddings=True, **common)


def state_checksum(model: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (name and bytes, sorted): equal iff weights are equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def warm_up(model, tokenizer, conversations, steps: int, seed: int, block: int = 128, batch: int = 16,
            lr: float = 3e-3, chat_template: str | None = None) -> dict:
    """Causal-LM training on packed chat-formatted text; returns the loss before and after.

    Args:
        chat_template: for a base tokenizer without one (tiny-llama3), the template to format the text with.
    """
    ids = []
    for conv in conversations:
        ids += tokenizer.apply_chat_template(conv, tokenize=True, return_dict=False, chat_template=chat_template)
    n_blocks = len(ids) // block
    data = torch.tensor(ids[: n_blocks * block]).view(n_blocks, block)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / steps))
    model.train()
    losses = []
    for _ in range(steps):
        batch_ids = data[torch.randint(0, n_blocks, (batch,), generator=gen)]
        loss = model(input_ids=batch_ids, labels=batch_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    model.eval()
    head = sum(losses[:10]) / max(1, len(losses[:10]))
    tail = sum(losses[-10:]) / max(1, len(losses[-10:]))
    return {"loss_first10": round(head, 3), "loss_last10": round(tail, 3), "tokens": int(data.numel())}


def build_tiny_model(style: str, out_dir: str | Path, seed: int = 0, warmup_steps: int = 0,
                     hidden: int = 128, layers: int = 4, data_dir: Path | None = None) -> dict:
    """Build one tiny model + tokenizer into `out_dir` (loadable by `from_pretrained(out_dir)`).

    Args:
        style: "llama3" (reward base) or "chatml" (Qwen2-style policy).
        seed: fixes tokenizer training order, weight init and warm-up batches.
        warmup_steps: causal-LM steps on the kit's train text (0: random weights).

    Returns:
        A manifest (also saved as `tiny_manifest.json`): checksum, sizes, warm-up losses, seconds.
    """
    start = time.perf_counter()
    conversations = kit_texts("train", data_dir)
    tokenizer = build_tokenizer([m["content"] for conv in conversations for m in conv], style)
    model_cls, config = _model_config(style, tokenizer, hidden, layers)
    torch.manual_seed(seed)
    model = model_cls(config)
    template = LLAMA3_CHAT_TEMPLATE if style == "llama3" else None
    warm = warm_up(model, tokenizer, conversations, warmup_steps, seed, chat_template=template) if warmup_steps else {}
    if style == "chatml":
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    manifest = {"style": style, "architecture": model_cls.__name__, "seed": seed, "checksum": state_checksum(model),
                "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
                "warmup_steps": warmup_steps, **warm, "seconds": round(time.perf_counter() - start, 1)}
    (out_dir / "tiny_manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def save_random_head_reward_model(base_path, out_dir, seed: int = 0) -> Path:
    """A reward-model folder from a tiny base: a `score` head drawn with `seed`, the dedicated pad token, the chat
    template, laid out as notebook 03 saves one. For scoring tests and benchmarks, where what the head learned does
    not matter but everything about how it is read does."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .chat import prepare_reward_tokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, use_safetensors=True)
    tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(base_path))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def reusable_tiny_model(out_dir: str | Path, style: str, seed: int, warmup_steps: int) -> dict | None:
    """The manifest of a tiny model already in `out_dir` built with these settings and intact, else None.

    Intact: the weights on disk hash to the checksum recorded when they were built.
    """
    manifest_path = Path(out_dir) / "tiny_manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if (manifest.get("style"), manifest.get("seed"), manifest.get("warmup_steps")) != (style, seed, warmup_steps):
        return None
    model_cls = LlamaForCausalLM if style == "llama3" else Qwen2ForCausalLM
    try:
        model = model_cls.from_pretrained(out_dir, use_safetensors=True)
    except (OSError, ValueError):
        return None
    return {**manifest, "reused": True} if state_checksum(model) == manifest.get("checksum") else None


def build_tiny_models(models_dir: str | Path, seed: int = 0, rm_warmup_steps: int = 0,
                      policy_warmup_steps: int = 0, reuse: bool = False) -> dict[str, dict]:
    """Build both tiny models of the `tiny` profile under `models_dir`; returns their manifests.

    With `reuse`, a model already there with the same seed and warm-up whose weights match their recorded
    checksum is kept (its manifest gets "reused": True) instead of being built again.
    """
    from .profiles import TINY_POLICY, TINY_RM_BASE

    models_dir = Path(models_dir)
    out = {}
    for name, style, steps in ((TINY_RM_BASE, "llama3", rm_warmup_steps), (TINY_POLICY, "chatml", policy_warmup_steps)):
        kept = reusable_tiny_model(models_dir / name, style, seed, steps) if reuse else None
        out[name] = kept or build_tiny_model(style, models_dir / name, seed, steps)
    return out
