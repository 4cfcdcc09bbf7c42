"""OpenRLHF 0.11.2 (pins transformers 5.15, deepspeed 0.19.6, flash-attn 2.8.3), CPU.

Loading and scoring: `openrlhf.models.get_llm_for_sequence_regression(MODEL, "reward", param_dtype=...,
normalize_reward=..., attn_implementation="sdpa", value_head_prefix="score")` (the prefix is also read from
config.json), then its own `RewardModel.forward(input_ids, attention_mask)` on one right-padded batch of the
probes tokenized with `tokenizer.apply_chat_template(messages, tokenize=True)` (OpenRLHF's reward datasets
apply the chat template the same way). Its forward takes the value at the last position whose attention mask is 1
(`eos_indices = attention_mask.size(1) - 1 - attention_mask.fliplr().argmax(1)`), so right padding gives the last
real token, as in the kit.
Workarounds (none touches the model folder or the scoring path):
- `flash_attn` is stubbed: `openrlhf.models.ring_attn_utils` imports `flash_attn.bert_padding` and
  `flash_attn.utils.distributed` at import time; flash-attn 2.8.3 is CUDA-only (no CPU build) and those
  functions are used only with `packing_samples=True`, which this script does not use. The stubs raise if called.
- `attn_implementation="sdpa"` instead of OpenRLHF's default `"flash_attention_2"` (CUDA-only).
- fp32: OpenRLHF's `convert_to_torch_dtype` accepts only "bf16" and "fp16"; the fp32 variant wraps it so that
  "fp32" maps to torch.float32 (everything else goes to the original). bf16 is OpenRLHF's default and is reported,
  not gated (bf16 rounding moves rewards by ~1e-2).
- deepspeed 0.19.6 is real, not stubbed: built from its source distribution with `--no-build-isolation` (so it
  builds against the venv's CPU torch instead of pulling a CUDA one; no ops compiled). Imported, unused without ZeRO-3.
`normalize_reward=True` should return (reward - mean) / std with mean/std from config.json: it is compared with
the kit's normalised rewards and reported, not gated (upstream bug on transformers >= 5.15: the non-persistent
`mean`/`std` buffers set in `__init__` are not restored after loading, OpenRLHF PR #1343): they hold uninitialised
memory, so the normalised rewards are garbage and change from run to run (the note below prints them).
"""

import torch
from common import Run, stub_modules

stub_modules({"flash_attn": [], "flash_attn.utils": [], "flash_attn.utils.distributed": ["all_gather"],
              "flash_attn.bert_padding": ["index_first_axis", "pad_input", "rearrange", "unpad_input"]},
             "flash-attn is CUDA-only; OpenRLHF uses it only with packing_samples=True")
import openrlhf.utils.utils as orl_utils  # noqa: E402 - after the stub
from openrlhf.models import get_llm_for_sequence_regression  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

run = Run("openrlhf", ["openrlhf", "transformers", "deepspeed", "torch"])
tokenizer = AutoTokenizer.from_pretrained(run.model)
ids = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=False) for c in run.conversations()]
run.check_ids(ids)
width = max(len(x) for x in ids)
input_ids = torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in ids])
attention_mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
original_dtype = orl_utils.convert_to_torch_dtype


@torch.no_grad()
def score(param_dtype, normalize_reward=False):
    orl_utils.convert_to_torch_dtype = lambda d: torch.float32 if d == "fp32" else original_dtype(d)
    model = get_llm_for_sequence_regression(run.model, "reward", param_dtype=param_dtype, attn_implementation="sdpa",
                                            normalize_reward=normalize_reward, value_head_prefix="score").eval()
    if normalize_reward:
        run.note(f"normalize_reward=True: model.mean={model.mean.tolist()}, model.std={model.std.tolist()} "
                 f"(config.json: mean={model.config.mean}, std={model.config.std})")
    return model(input_ids, attention_mask=attention_mask).float().tolist()


run.variant("get_llm_for_sequence_regression fp32", lambda: score("fp32"))
run.variant("same, bf16 (OpenRLHF default)", lambda: score("bf16"), gate=False, note="bf16 weights and activations")
run.variant("fp32, normalize_reward=True", lambda: score("fp32", True), gate=False, expect="normalized",
            note="vs the kit's (reward - mean) / std; known upstream bug (OpenRLHF PR #1343)")
