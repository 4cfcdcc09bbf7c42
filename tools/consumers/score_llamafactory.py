"""LLaMA-Factory 0.9.5 (its own venv: transformers 5.6, trl 0.24, peft 0.18), PPO's reward model, fp32 on CPU.

Loading: `llamafactory.train.trainer_utils.create_reward_model(None, ModelArguments(model_name_or_path=RM),
FinetuningArguments(stage="ppo", finetuning_type="lora", reward_model=RM, reward_model_type="full"))` with
RM = `MODEL/llamafactory` (the causal LM + `value_head.safetensors` export): its own `load_tokenizer` and
`load_model(..., add_valuehead=True)` (trl's `AutoModelForCausalLMWithValueHead`, head `v_head.summary`). On CPU
its compute dtype resolves to fp32 (`infer_optim_dtype`: no bf16/fp16 device), weights load with `torch_dtype="auto"`.
Encoding: `get_template_and_fix_tokenizer(tokenizer, DataArguments(template="llama3"))`, then
`template.encode_oneturn(tokenizer, messages, system)` -> prompt_ids + response_ids (a system message goes in
`system`), as its PPO builds query + response.
Scoring: the two lines of its PPO `CustomPPOTrainer.get_rewards` (`train/ppo/trainer.py:413,418`):
`values = reward_model(**batch, return_dict=True, use_cache=False)[-1]` and
`values.gather(dim=-1, index=batch["attention_mask"].sum(dim=-1, keepdim=True) - 1)` on a right-padded batch
(its PPO loop switches the tokenizer to right padding before `get_rewards`). They are copied, not called: the
trainer cannot be built without a policy, a dataset and an optimizer.
Whitespace: LLaMA-Factory's `llama3` template inserts message content as is; the kit's (Meta's) template trims it.
A response with trailing whitespace therefore gets different token ids and a different reward: the gated variant
leaves that probe out; the second row reports all probes.
`torchaudio` is stubbed: `llamafactory.data.mm_plugin` imports it at import time, only audio inputs use it, and the
newest torchaudio on the package index (2.11.1) requires torch 2.11. The stub raises if called.
Install: LLaMA-Factory itself with `--no-deps` plus the libraries the reward path imports (its full dependency set
adds gradio, torchvision, torchaudio, av... for the web UI and multimodal data).
"""

import os

import torch
from common import Run, stub_modules

stub_modules({"torchaudio": []}, "no torchaudio build for torch 2.13 on the index; used only for audio inputs")
from llamafactory.data import get_template_and_fix_tokenizer  # noqa: E402 - after the stub
from llamafactory.hparams import DataArguments, FinetuningArguments, ModelArguments  # noqa: E402 - after the stub
from llamafactory.model import load_tokenizer  # noqa: E402 - after the stub
from llamafactory.train.trainer_utils import create_reward_model  # noqa: E402 - after the stub

run = Run("llamafactory", ["llamafactory", "transformers", "trl", "peft", "torch"])
rm_dir = os.path.join(run.model, "llamafactory")
model_args = ModelArguments(model_name_or_path=rm_dir)  # the policy's arguments; the RM's are copied from them
finetuning_args = FinetuningArguments(stage="ppo", finetuning_type="lora", reward_model=rm_dir,
                                      reward_model_type="full")
tokenizer = load_tokenizer(model_args)["tokenizer"]
template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="llama3"))


def encode(messages):
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    prompt_ids, response_ids = template.encode_oneturn(tokenizer, messages[1:] if system else messages, system)
    return prompt_ids + response_ids


ids = [encode(c) for c in run.conversations()]
run.check_ids(ids)


@torch.no_grad()
def score():
    reward_model = create_reward_model(None, model_args, finetuning_args).eval()
    dtypes = sorted({str(p.dtype) for p in reward_model.parameters()})
    run.note(f"reward model {type(reward_model).__name__}, parameter dtypes {dtypes}")
    width = max(len(x) for x in ids)
    batch = {"input_ids": torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in ids]),
             "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])}
    values = reward_model(**batch, return_dict=True, use_cache=False)[-1]
    rewards = values.gather(dim=-1, index=(batch["attention_mask"].sum(dim=-1, keepdim=True) - 1))
    return rewards.float().squeeze(-1).tolist()


ws = [p["id"] for p in run.probes if p["id"] == "trailing_ws"]
rewards = run.variant("create_reward_model (full) fp32, llama3 template", score, exclude=ws,
                      note="without the trailing-whitespace probe (template does not trim)")
if rewards is not None:
    run.variant("same, all probes", lambda: rewards, gate=False, note="trailing whitespace kept by the llama3 template")
