"""Scoring with a reward model: the same chat template and pooling as training.

A reward is the `score` head applied to the hidden state of the last non-pad token of
`apply_chat_template(prompt + response)` — exactly the sequence TRL's RewardTrainer trained on.

    scorer = RewardScorer.from_pretrained("runs/x/rm_merged")
    scorer.score("什么是人工智能?", "AI is ...")          # one float
    scorer.score_batch([(prompt, response), ...])        # many, in input order

    python -m helpers.score_cli --model DIR --input in.jsonl --output out.jsonl   # a file, resumable
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch


def _autocast(model, device: torch.device):
    """Autocast to the adapters' dtype when it is below fp32 (TRL makes a quantized model's LoRA bf16)."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    low = next((d for d in (torch.bfloat16, torch.float16) if d in dtypes), None)
    if low is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=low)


def grpo_autocast(bf16: bool, fp16: bool, device: str):
    """The autocast dtype a trainer wraps the `forward` of every model it prepares in, reward models included.

    accelerate 1.15 turns autocast on for bf16 on any device and for fp16 on GPUs only (accelerator.py:564-593);
    `prepare_model` wraps `forward` in it (accelerator.py:1824-1835); TRL 1.16's GRPOTrainer prepares each reward
    model so (grpo_trainer.py:1214). `RewardScorer(autocast=...)` then scores the same way before and after.
    """
    return torch.bfloat16 if bf16 else torch.float16 if fp16 and device != "cpu" else None


def compare_rewards(grpo_rewards, scorer_rewards, autocast=None) -> float:
    """Max |GRPO's reward - RewardScorer's| on the same answers; raises when it is over the tolerance.

    Tolerance: 1e-4 in fp32 (GPU kernels on batches of other shapes); in bf16/fp16 autocast the dtype's eps / 2 x the
    largest |reward| (half to one unit in its last place): computed the same way, both round to the same value.

    Raises:
        ValueError: the gap, the tolerance and what to look at.
    """
    grpo = torch.as_tensor(grpo_rewards).detach().float().cpu().numpy()
    scorer = np.asarray(scorer_rewards, dtype=np.float32)
    gap = float(np.max(np.abs(grpo - scorer)))
    tolerance = max(1e-4, torch.finfo(autocast).eps / 2 * float(np.max(np.abs(scorer)))) if autocast else 1e-4
    if gap > tolerance:
        raise ValueError(f"GRPO's reward and RewardScorer's differ by up to {gap:.5f} (tolerance {tolerance:.5f}, "
                         f"{autocast or 'fp32'}). If only one side runs in autocast, build the scorer with "
                         "RewardScorer.from_pretrained(..., autocast=grpo_autocast(args.bf16, args.fp16, device)); "
                         "else compare the token ids (scorer.tokens) with the reward model's chat template.")
    return gap


def render_ids(tokenizer, prompt: list[dict], response: list[dict]) -> list[int]:
    """Token ids of prompt + response through the chat template, as TRL tokenizes a preference side."""
    return tokenizer.apply_chat_template(prompt + response, tokenize=True, return_dict=False)


def truncate_ids(ids: list[int], max_length: int | None, bos_id: int | None = None) -> list[int]:
    """`ids` cut to `max_length` tokens keeping the END (and a leading BOS): the reward is read at the last token,
    the end-of-turn token the model was trained to read it at, so the start of a long prompt is what gets dropped."""
    if not max_length or len(ids) <= max_length:
        return ids
    if bos_id is not None and ids[0] == bos_id and max_length > 1:
        return [ids[0], *ids[len(ids) - max_length + 1:]]
    return ids[len(ids) - max_length:]


def pad_batch(batch: list[list[int]], pad_id: int, padding_side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token-id lists padded to one width with `pad_id`; with right padding the last
    real token of row i sits at `attention_mask[i].sum() - 1`."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, ids in enumerate(batch):
        cols = slice(0, len(ids)) if padding_side == "right" else slice(width - len(ids), width)
        input_ids[row, cols], attention[row, cols] = torch.tensor(ids), 1
    return input_ids, attention


@torch.no_grad()
def _forward(model, pad_id: int, batch: list[list[int]], padding_side: str = "right",
             autocast: torch.dtype | None = None) -> np.ndarray:
    """Rewards of a batch of token-id lists, padded on `padding_side` with `pad_id`; in `autocast` when given."""
    device = next(model.parameters()).device
    input_ids, attention = pad_batch(batch, pad_id, padding_side)
    with torch.autocast(device_type=device.type, dtype=autocast) if autocast else _autocast(model, device):
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
    return logits.float().squeeze(-1).cpu().numpy()


def trainer_batch_rewards(model, pad_id: int, chosen_ids: list[list[int]], rejected_ids: list[list[int]],
                          batch_size: int) -> dict[str, np.ndarray]:
    """Rewards of every pair as `RewardTrainer` evaluates them: pairs in dataset order, `batch_size` at a time, each
    batch's chosen and rejected sides padded together into one forward pass (TRL's `DataCollatorForPreference`,
    then `compute_loss` splits the rewards in two halves). In 8-bit a reward depends on its batch partners."""
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    for start in range(0, len(chosen_ids), batch_size):
        batch_chosen = list(chosen_ids[start:start + batch_size])
        rewards = _forward(model, pad_id, batch_chosen + list(rejected_ids[start:start + batch_size]))
        chosen.extend(rewards[:len(batch_chosen)])
        rejected.extend(rewards[len(batch_chosen):])
    model.train(was_training)
    return {"chosen": np.array(chosen), "rejected": np.array(rejected)}


def trainer_batch_accuracies(model, pad_id: int, chosen_ids: list[list[int]], rejected_ids: list[list[int]],
                             batch_size: int) -> list[float]:
    """Pairwise accuracy of each evaluation batch as `RewardTrainer` forms it (`trainer_batch_rewards`); TRL logs
    their mean."""
    rewards = trainer_batch_rewards(model, pad_id, chosen_ids, rejected_ids, batch_size)
    right = rewards["chosen"] > rewards["rejected"]
    return [float(right[i:i + batch_size].mean()) for i in range(0, len(right), batch_size)]


def score_conversations(model, tokenizer, conversations: list[list[dict]], batch_size: int = 16,
                        max_length: int | None = None) -> np.ndarray:
    """Rewards of whole conversations (each a message list), in input order.

    Batches are right-padded with the tokenizer's pad token; the model finds the last non-pad token
    from `model.config.pad_token_id`, so that id must be a real pad token (not EOS: notebook 02, "pad token").
    Conversations are batched shortest first, so a batch pads to a length near its own (on a real model padding
    was most of the work: a batch in input order pads every short answer to the longest one).
    """
    if model.config.pad_token_id is None:
        raise ValueError("model.config.pad_token_id is not set: set it to tokenizer.pad_token_id so the reward is "
                         "read at the last real token.")
    ids = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=False) for c in conversations]
    ids = [seq[:max_length] for seq in ids] if max_length else ids
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    was_training = model.training
    model.eval()
    rewards = None  # (n,) for a reward model; (n, labels) for a classifier with more than one label
    for start in range(0, len(ids), batch_size):
        positions = order[start:start + batch_size]
        batch = _forward(model, tokenizer.pad_token_id, [ids[i] for i in positions])
        rewards = np.zeros((len(ids), *batch.shape[1:])) if rewards is None else rewards
        rewards[positions] = batch
    model.train(was_training)
    return rewards if rewards is not None else np.zeros(0)


def score_pairs(model, tokenizer, pairs, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Rewards of the chosen and rejected side of every pair of a conversational preference dataset."""
    chosen = [row["prompt"] + row["chosen"] for row in pairs]
    rejected = [row["prompt"] + row["rejected"] for row in pairs]
    return {"chosen": score_conversations(model, tokenizer, chosen, batch_size),
            "rejected": score_conversations(model, tokenizer, rejected, batch_size)}


def pairwise_accuracy(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """Share of pairs where the chosen response gets the higher reward (0.5 is chance)."""
    return float(np.mean(np.asarray(chosen) > np.asarray(rejected)))


def mean_margin(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """Average reward gap r_chosen - r_rejected."""
    return float(np.mean(np.asarray(chosen) - np.asarray(rejected)))


def spearman(a, b) -> float:
    """Spearman rank correlation of two score vectors (average ranks for ties), without SciPy."""
    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for value in np.unique(x[np.r_[False, np.diff(x[order]) == 0].nonzero()[0]] if len(x) else []):
            r[x == value] = r[x == value].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _messages(text_or_messages, role: str) -> list[dict]:
    if isinstance(text_or_messages, str):
        return [{"role": role, "content": text_or_messages}]
    return list(text_or_messages)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


class RewardScorer:
    """A trained reward model plus its tokenizer, scoring the way it was trained.

    Build it with `RewardScorer.from_pretrained(path)`. Prompts and responses are strings (one user
    turn, one assistant turn) or message lists; both go through the tokenizer's chat template.
    """

    def __init__(self, model, tokenizer, max_length: int | None = None, mean: float = 0.0, std: float = 1.0,
                 autocast: torch.dtype | None = None):
        if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
            raise ValueError(f"pad token {tokenizer.pad_token!r} is missing or equals EOS: the reward would be read "
                             "before the final <|eot_id|>. Load with RewardScorer.from_pretrained, which sets the "
                             "dedicated pad token, or call helpers.train.prepare_reward_tokenizer(tokenizer).")
        model.config.pad_token_id = tokenizer.pad_token_id
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.mean, self.std = max_length, float(mean), float(std) or 1.0
        self.autocast = autocast  # score in this autocast dtype (a trainer's mixed precision), or as loaded
        self.truncated = 0  # inputs cut to max_length so far
        self.loading_info: dict = {}

    @classmethod
    def from_pretrained(cls, path, quantization: str | None = None, device: str | None = None,
                        max_length: int | None = None, autocast: torch.dtype | None = None) -> RewardScorer:
        """Load a merged reward model directory (notebook 03's `rm_merged/`), refusing a random head.

        Args:
            quantization: None (fp32 on CPU, the dtype policy on GPU), "8bit" or "4bit" (bitsandbytes).
            device: "cuda" or "cpu"; default: cuda when available.
            max_length: truncate longer inputs, keeping the end (`truncate_ids`; counted in `.truncated`); default:
                the manifest's, if any, else no limit (the scoring CLI defaults to max_position_embeddings).
            autocast: score every batch in `torch.autocast` to this dtype, e.g. torch.bfloat16 to score as a
                trainer with `bf16=True` will once it shares the model (`grpo_autocast`).

        Raises:
            ValueError: the checkpoint has no trained `score` head (loading would initialise it at random).
        """
        import json
        from pathlib import Path

        from transformers import AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig

        from .chat import prepare_reward_tokenizer
        from .env import pick_dtype, quiet_transformers, require_safetensors

        require_safetensors(path, "reward model")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        quant = {"8bit": BitsAndBytesConfig(load_in_8bit=True), "4bit": BitsAndBytesConfig(load_in_4bit=True),
                 None: None}
        if quantization not in quant:
            raise ValueError(f"quantization must be None, '8bit' or '4bit', got {quantization!r}")
        dtype = pick_dtype(device).dtype if device == "cuda" else torch.float32
        with quiet_transformers():  # the load report is checked below, not printed
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=dtype, quantization_config=quant[quantization], output_loading_info=True,
                device_map={"": device} if quantization else None, use_safetensors=True)
        missing = [k for k in info["missing_keys"] if k.startswith("score")]
        if missing:
            raise ValueError(f"{path} has no trained reward head ({missing} were newly initialised, so every score "
                             "would be random). Load the merged reward model of notebook 03, not the base model.")
        if not quantization:
            model.to(device)
        tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(path))
        manifest = Path(path) / "reward_head.json"
        norm = json.loads(manifest.read_text()).get("normalization", {}) if manifest.exists() else {}
        mean = norm.get("mean", getattr(model.config, "mean", 0.0))
        std = norm.get("std", getattr(model.config, "std", 1.0))
        scorer = cls(model, tokenizer, max_length or norm.get("max_length"), mean, std, autocast)
        scorer.loading_info = {k: list(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys")}
        return scorer

    def tokens(self, prompt, response) -> list[int]:
        """The token ids the model reads for this prompt and response (chat template applied, not truncated)."""
        return render_ids(self.tokenizer, _messages(prompt, "user"), _messages(response, "assistant"))

    def _ids(self, prompt, response) -> list[int]:
        ids = self.tokens(prompt, response)
        if self.max_length and len(ids) > self.max_length:
            self.truncated += 1
            ids = truncate_ids(ids, self.max_length, self.tokenizer.bos_token_id)
        return ids

    def _score_ids(self, batch: list[list[int]], padding_side: str = "right") -> np.ndarray:
        return _forward(self.model, self.tokenizer.pad_token_id, batch, padding_side, self.autocast)

    def score(self, prompt, response, normalized: bool = False) -> float:
        """The reward of one response to one prompt (normalised with the stored mean/std if asked)."""
        reward = float(self._score_ids([self._ids(prompt, response)])[0])
        return (reward - self.mean) / self.std if normalized else reward

    def score_batch(self, items, batch_size: int = 16, normalized: bool = False,
                    padding_side: str = "right", progress: bool = False) -> np.ndarray:
        """Rewards of many (prompt, response) pairs, in input order.

        Inputs are sorted by length so each batch pads little, then the results are put back in order.
        """
        rewards = np.zeros(len(items), dtype=np.float32)
        for positions, batch_rewards in self.iter_batches(items, batch_size, padding_side, progress):
            rewards[positions] = batch_rewards
        return (rewards - self.mean) / self.std if normalized else rewards

    def iter_batches(self, items, batch_size: int = 16, padding_side: str = "right", progress: bool = False):
        """Yield (positions in `items`, raw rewards) one batch at a time, shortest inputs first.

        For callers that write as they go: each batch's rewards are final when yielded.
        """
        ids = [self._ids(*item) if not isinstance(item, dict) else self._ids(item["prompt"], item["response"])
               for item in items]
        yield from self.iter_id_batches(ids, batch_size, padding_side, progress)

    def iter_id_batches(self, ids: list[list[int]], batch_size: int = 16, padding_side: str = "right",
                        progress: bool = False):
        """`iter_batches` for inputs tokenized already (`tokens`, then `truncate_ids`): (positions, raw rewards)."""
        from tqdm.auto import tqdm

        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in tqdm(range(0, len(ids), batch_size), disable=not progress, desc="scoring", unit="batch"):
            chunk = order[start:start + batch_size]
            yield chunk, self._score_ids([ids[i] for i in chunk], padding_side)

    def compare(self, prompt, a, b) -> float:
        """P(a is preferred to b) = σ(r_a − r_b), the Bradley–Terry probability the model was trained on."""
        r_a, r_b = self.score_batch([(prompt, a), (prompt, b)])
        return float(_sigmoid(r_a - r_b))

    def best_of_n(self, prompt, candidates: list) -> dict:
        """Score every candidate answer; return the best one, its index and all rewards."""
        rewards = self.score_batch([(prompt, c) for c in candidates])
        best = int(np.argmax(rewards))
        return {"index": best, "best": candidates[best], "rewards": rewards.tolist()}

