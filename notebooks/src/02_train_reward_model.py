# %% [markdown]
# # 02 · Train a reward model: 8-bit LLaMA 3 + LoRA with TRL
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/reward-lab/reward-lab/blob/main/notebooks/02_train_reward_model.ipynb)
#
# A reward model reads a conversation and returns **one number**: how good the last answer is. We train
# one from the pairs of notebook 01 with the recipe of the seeds — LLaMA 3 8B loaded in 8-bit, LoRA
# r=8/alpha=16/dropout 0.05, lr 1e-5, batch 2 × accumulation 4, max_length 1024, 3 epochs — done the way
# TRL 1.x needs it, and we check that it learned something on pairs it never saw.
#
# **You will learn**
# - what a reward model *is* in TRL: `AutoModelForSequenceClassification` with `num_labels=1` — a linear
#   `score` head on the last token, **not** a sum of token log-likelihoods (seed 001 gets this wrong);
# - the Bradley–Terry loss `-log σ(r_chosen − r_rejected)`, computed by hand and by the trainer;
# - 8-bit loading with bitsandbytes, `prepare_model_for_kbit_training`, and why LoRA needs `task_type="SEQ_CLS"`;
# - `RewardConfig` / `RewardTrainer`, evaluation each epoch, TensorBoard, and resuming after a disconnect.
#
# | profile | hardware | time |
# |---|---|---|
# | `tiny` | any CPU | 1–2 minutes |
# | `llama3-8b` | T4 16 GB (fp16) · L4/A100 (bf16) | about 1–2 hours on a T4 for 3 epochs of the kit's pairs |

# %%
import os, sys
if "google.colab" in sys.modules:  # Colab: fetch the kit once; elsewhere `make setup` installed it
    if not os.path.isdir("/content/reward-lab"):
        !git clone -q --depth 1 https://github.com/reward-lab/reward-lab /content/reward-lab
    sys.path.insert(0, "/content/reward-lab")
from helpers import setup, default_run_dir
versions = setup()

# %% [markdown]
# **Colab: keep the run on Google Drive.** Training takes a while and Colab sessions disconnect. Mount Drive
# *before* the parameters cell: `RUN_DIR` then defaults to `MyDrive/reward-lab/runs/default`, checkpoints
# are written there, and after a disconnect you rerun this notebook with `RESUME = True`.

# %%
from helpers import mount_drive
mount_drive()  # Colab only: RUN_DIR on Drive; does nothing elsewhere

# %% tags=["parameters"]
PROFILE = os.environ.get("REWARD_LAB_PROFILE", "llama3-8b")  # "tiny": offline CPU course
RUN_DIR = default_run_dir()  # $REWARD_LAB_RUN_DIR, Drive when mounted, else runs/default
SEED = 42
RESUME = False  # True: continue from the newest checkpoint in RUN_DIR/rm_adapter/checkpoints/
QUANTIZATION = "profile"  # "profile" (8bit), "8bit", "4bit" (QLoRA) or "none" (full-precision base)
MAX_STEPS = -1  # > 0: stop after this many optimizer steps (quick smoke runs)

# %%
import time
import torch
from helpers import check_hardware, get_hf_token, get_profile, pick_dtype, prepare_run_dir, set_seed
from helpers.data import require_inputs

overrides = {} if QUANTIZATION == "profile" else {"quantization": None if QUANTIZATION == "none" else QUANTIZATION}
profile = get_profile(PROFILE, **overrides)
run_dir = prepare_run_dir(RUN_DIR)
rm_path = profile.model_path("rm_base", run_dir)
require_inputs([run_dir / "data" / "train.jsonl", run_dir / "data" / "test.jsonl"], notebook="01_prepare_data")
require_inputs([rm_path] if profile.is_tiny else [], notebook="00_setup")
hardware, dtype = check_hardware(profile), pick_dtype()
set_seed(SEED)  # before loading: the new score head is initialised at random
print(f"profile {profile.name}, quantization {profile.quantization}, dtype {dtype.name}: {dtype.reason}")

# %% [markdown]
# ## The data
# Notebook 01 wrote the pairs in TRL's *conversational* format: `prompt` is a list of messages, `chosen` and
# `rejected` are the assistant's answers. TRL renders `prompt + chosen` and `prompt + rejected` through the
# tokenizer's chat template, so the reward model sees exactly the format it will score later.

# %%
from datasets import load_dataset

train = load_dataset("json", data_files=str(run_dir / "data" / "train.jsonl"), split="train")
test = load_dataset("json", data_files=str(run_dir / "data" / "test.jsonl"), split="train")
print(train)
train[0]["prompt"], train[0]["chosen"], train[0]["rejected"]

# %% [markdown]
# The tokenizer needs two things the LLaMA 3 *base* model does not ship: a chat template, and a **pad token
# that is not EOS**. The reward is read at the last non-pad token; with pad = EOS, a sequence that ends in EOS
# looks like padding there. LLaMA 3 reserves `<|finetune_right_pad_id|>` for exactly this.

# %%
from transformers import AutoTokenizer
from helpers.train import prepare_reward_tokenizer

tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(rm_path, token=get_hf_token()))
print(f"pad {tokenizer.pad_token!r} = {tokenizer.pad_token_id}, eos {tokenizer.eos_token!r} = {tokenizer.eos_token_id}")

# %% [markdown]
# ## Which pairs will TRL drop?
# `RewardTrainer` **silently drops** every pair with either side longer than `max_length`: no count, no log
# line. The audit from notebook 01, rerun here for this profile's `max_length`, lists them before training.

# %%
from helpers.audit import audit_lengths
from helpers.train import check_trainable_pairs

audit = audit_lengths(train, tokenizer, profile.max_length)
print(f"{audit['over_max_length']} of {audit['pairs']} training pairs exceed max_length={profile.max_length} "
      f"and will be dropped (suggested max_length: {audit['suggested_max_length']}):")
for row in audit["over_max_length_rows"]:
    print("  ", row)
check_trainable_pairs(audit["pairs"] - audit["over_max_length"], audit["pairs"], profile.max_length,
                      audit["suggested_max_length"])

# %% [markdown]
# ## Load the base in 8-bit
# `load_in_8bit` stores every linear layer's weights as int8 (LLM.int8(), with outlier features kept in 16
# bit): the 8B base shrinks from ~16 GB to ~9 GB, which is what makes a T4 possible. The profile switch
# `QUANTIZATION = "4bit"` loads NF4 weights instead (QLoRA): ~5.5 GB, slower per step on most GPUs because of
# de-quantisation, and a slightly noisier base; `"none"` keeps the base in 16 bit (needs ~16 GB + activations).

# %%
from transformers import BitsAndBytesConfig

if profile.quantization == "8bit":
    bnb_config = BitsAndBytesConfig(load_in_8bit=True)
elif profile.quantization == "4bit":  # QLoRA: NF4 weights, double quantisation, compute in the training dtype
    bnb_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype.dtype)
else:
    bnb_config = None
bnb_config

# %% [markdown]
# Now the model. The log says `score.weight` is **MISSING** (newly initialised): expected — the base is a
# language model, and the reward head is what we are about to train.

# %%
from transformers import AutoModelForSequenceClassification

model = AutoModelForSequenceClassification.from_pretrained(
    rm_path, num_labels=1, quantization_config=bnb_config, dtype=dtype.dtype,
    device_map={"": 0} if hardware["device"] == "cuda" else None, token=get_hf_token(),
)
model.config.pad_token_id = tokenizer.pad_token_id  # where the reward is read: the last non-pad token
print(type(model).__name__, "| reward head:", model.score)

# %% [markdown]
# **The reward is not a log-likelihood.** Seed 001 says a TRL reward model sums the token log-probabilities
# of a causal LM. It does not: the language-model head is gone, and `score` — one `Linear(hidden, 1)` —
# maps the hidden state of the *last* token to a single number. That number means nothing on its own; only
# differences between answers to the same prompt are trained.

# %%
import bitsandbytes as bnb

n_8bit = sum(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules())
n_4bit = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
print(f"{n_8bit} Linear8bitLt and {n_4bit} Linear4bit layers; "
      f"memory footprint {model.get_memory_footprint() / 2**20:.1f} MiB")

# %% [markdown]
# ## LoRA, and why `task_type="SEQ_CLS"`
# `prepare_model_for_kbit_training` freezes the int8 base and casts norms to fp32 for stable training. LoRA
# then adds small trainable matrices. `task_type="SEQ_CLS"` is not decoration: it puts the `score` head in
# `modules_to_save`, so the head is **trained and saved with the adapter**. Without it the head stays random,
# the adapter file lacks it, and the merged model scores noise (notebook 03 shows this failure).

# %%
from peft import LoraConfig, prepare_model_for_kbit_training
from helpers.train import check_reward_setup

if bnb_config is not None:
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=profile.gradient_checkpointing)
lora_config = LoraConfig(r=profile.lora_r, lora_alpha=profile.lora_alpha, lora_dropout=profile.lora_dropout,
                         target_modules=list(profile.lora_target_modules), task_type="SEQ_CLS")
check_reward_setup(model, lora_config)
lora_config

# %% [markdown]
# The same check catches the seeds' mistake before a single training step (this cell is meant to raise):

# %%
# NBVAL_CHECK_OUTPUT
from helpers import expect_error

with expect_error(ValueError):
    check_reward_setup(model, LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM"))

# %% [markdown]
# ## RewardConfig
# Every value comes from the profile (print `profile` to see them). Note the TRL defaults we override:
# learning rate 1e-4 → the profile's, gradient checkpointing on → the profile's, bf16 on → the dtype policy
# (fp16 on a T4). Evaluation runs on the held-out split every epoch; checkpoints every `save_steps`.

# %%
from trl import RewardConfig

checkpoint_dir = run_dir / "rm_adapter" / "checkpoints"
args = RewardConfig(
    output_dir=str(checkpoint_dir), seed=SEED, max_length=profile.max_length,
    learning_rate=profile.learning_rate, num_train_epochs=profile.num_train_epochs, max_steps=MAX_STEPS,
    per_device_train_batch_size=profile.per_device_train_batch_size,
    gradient_accumulation_steps=profile.gradient_accumulation_steps,
    per_device_eval_batch_size=profile.eval_batch_size, gradient_checkpointing=profile.gradient_checkpointing,
    bf16=dtype.bf16, fp16=dtype.fp16, use_cpu=hardware["device"] == "cpu",
    eval_strategy="epoch", logging_steps=profile.logging_steps,
    save_strategy="steps", save_steps=profile.save_steps, save_total_limit=2,
    report_to="tensorboard",  # event files under checkpoints/runs/
)
print(f"lr {args.learning_rate}, batch {args.per_device_train_batch_size} x {args.gradient_accumulation_steps}, "
      f"epochs {args.num_train_epochs}, bf16 {args.bf16}, fp16 {args.fp16}")

# %%
from trl import RewardTrainer

trainer = RewardTrainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                        processing_class=tokenizer, peft_config=lora_config)
trainer.model.print_trainable_parameters()
print(f"{len(trainer.train_dataset)} training pairs after TRL's length filter "
      f"(audit predicted {audit['pairs'] - audit['over_max_length']})")

# %% [markdown]
# ## The Bradley–Terry loss, by hand
# The collator stacks a batch as `[chosen_1 … chosen_n, rejected_1 … rejected_n]`. One forward pass gives a
# reward per row; the loss is `-log σ(r_chosen − r_rejected)`, averaged. We compute it ourselves on one batch
# and compare with what the trainer computes on the same batch.

# %%
from helpers.train import bradley_terry_loss, trainer_loss_on_batch, training_autocast

batch = next(iter(trainer.get_eval_dataloader()))
trainer.model.eval()
with torch.no_grad(), training_autocast(args, trainer.model.device):
    rewards = trainer.model(input_ids=batch["input_ids"].to(trainer.model.device),
                            attention_mask=batch["attention_mask"].to(trainer.model.device)).logits.squeeze(-1)
r_chosen, r_rejected = rewards.chunk(2)  # kept in the autocast dtype, exactly as the trainer computes
by_hand, by_trainer = bradley_terry_loss(r_chosen, r_rejected).float(), trainer_loss_on_batch(trainer, batch)
print(f"by hand {by_hand.item():.6f}  trainer {by_trainer.item():.6f}  (untrained: about log 2 = 0.693)")
assert torch.allclose(by_hand, by_trainer, atol=1e-6), "the trainer's loss should be Bradley-Terry"

# %% [markdown]
# ## Train
# `RESUME = True` picks the newest checkpoint in `RUN_DIR/rm_adapter/checkpoints/` and continues from it
# (optimizer, scheduler, data order and RNG state included), so a disconnect costs at most `save_steps`.

# %%
from helpers.train import latest_checkpoint

resume_from = latest_checkpoint(checkpoint_dir) if RESUME else None
print(f"resuming from {resume_from}" if resume_from else "training from the start")
train_result = trainer.train(resume_from_checkpoint=resume_from)
train_result.metrics

# %% [markdown]
# In Colab, watch the same curves live in TensorBoard (they are logged to `checkpoints/runs/`):

# %%
from helpers import in_colab
if in_colab():
    %load_ext tensorboard
    %tensorboard --logdir {checkpoint_dir}/runs

# %% [markdown]
# ## Did it learn?
# Curves first: the training loss falls from log 2 ≈ 0.69 (a coin flip), and on the held-out split accuracy
# rises above 0.5 and the margin `r_chosen − r_rejected` grows.

# %%
from helpers.plots import plot_training_curves, save_figure
from helpers.train import split_history

curves = split_history(trainer.state.log_history)
fig = plot_training_curves(curves, keys=("loss", "accuracy", "margin"))
save_figure(fig, run_dir, "02_training_curves")
fig

# %% [markdown]
# Then every held-out pair, scored one by one with the trained model: pairwise accuracy (chosen scored
# higher) and the reward distributions of chosen and rejected answers.

# %%
import numpy as np
from helpers.score import mean_margin, pairwise_accuracy, score_pairs

scores = score_pairs(trainer.model, tokenizer, test, batch_size=profile.eval_batch_size)
eval_accuracy = pairwise_accuracy(scores["chosen"], scores["rejected"])
eval_margin = mean_margin(scores["chosen"], scores["rejected"])
print(f"held-out pairs {len(test)}: accuracy {eval_accuracy:.3f}, mean margin {eval_margin:.3f}")

# %%
from collections import defaultdict

by_category = defaultdict(list)
for row, c, r in zip(test, scores["chosen"], scores["rejected"]):
    by_category[row.get("category") or "all"].append(c > r)
{cat: f"{np.mean(hits):.2f} of {len(hits)}" for cat, hits in sorted(by_category.items())}

# %%
from helpers.plots import plot_reward_histograms

fig = plot_reward_histograms(scores["chosen"], scores["rejected"])
save_figure(fig, run_dir, "02_reward_histograms")
fig

# %% [markdown]
# ## Save the adapter
# `trainer.save_model` writes the LoRA weights **and the `score` head** (thanks to `SEQ_CLS`) plus the
# tokenizer with its chat template and pad token: everything notebook 03 needs to merge.

# %%
from safetensors import safe_open

adapter_dir = run_dir / "rm_adapter"
trainer.save_model(str(adapter_dir))
with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as f:
    head_keys = [k for k in f.keys() if "score" in k]
print(sorted(p.name for p in adapter_dir.iterdir()))
print("head saved with the adapter:", head_keys)

# %%
from helpers import save_metrics

metrics = {
    "eval_accuracy": eval_accuracy, "eval_margin": eval_margin, "test_pairs": len(test),
    "train_loss": train_result.metrics["train_loss"], "train_runtime_s": train_result.metrics["train_runtime"],
    "train_pairs_used": len(trainer.train_dataset), "dropped_over_max_length": audit["over_max_length"],
    "quantization": profile.quantization, "dtype": dtype.name, "linear8bit_layers": n_8bit,
    "linear4bit_layers": n_4bit, "bt_loss_by_hand": by_hand.item(), "bt_loss_trainer": by_trainer.item(),
    "head_keys_saved": head_keys, "resumed_from": resume_from, "eval_by_epoch": curves["eval"],
}
save_metrics(run_dir, "02_train_reward_model", metrics)
{k: metrics[k] for k in ("eval_accuracy", "eval_margin", "train_loss", "train_runtime_s", "dropped_over_max_length")}

# %% [markdown]
# ## Try it
# Level 1: set `QUANTIZATION = "4bit"` and compare accuracy and runtime. Level 2: set
# `MAX_STEPS = 10`, run, then `RESUME = True` and watch it continue from the checkpoint. Level 3: add a
# `margin` column (e.g. from a rating gap) to the training data: TRL then minimises
# `-log σ(r_c − r_r − margin)`. The self-check below tells you whether your model still beats chance.

# %%
assert eval_accuracy > 0.5, f"held-out accuracy {eval_accuracy:.2f} is no better than chance: check the data and lr"
print(f"self-check passed: {eval_accuracy:.0%} of held-out pairs ranked correctly")

# %% [markdown]
# ## What you have now
# - `RUN_DIR/rm_adapter/`: the LoRA adapter with the trained `score` head, and the tokenizer (chat template, pad);
# - `RUN_DIR/rm_adapter/checkpoints/`: checkpoints to resume from, and TensorBoard logs;
# - `RUN_DIR/figures/02_training_curves.png`, `02_reward_histograms.png`;
# - `RUN_DIR/metrics/02_train_reward_model.json`: held-out accuracy and margin, loss, runtime, dropped pairs.
#
# ## Next
# [03 · Merge the value head](03_merge_value_head.ipynb): reload the base in full precision, merge the adapter
# without losing the head, export for LLaMA-Factory and OpenRLHF, and verify the merged model scores exactly
# like this one.
