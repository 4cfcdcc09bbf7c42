# %% [markdown]
# # 02 · Train a reward model: an 8-bit base + LoRA with TRL
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/reward-lab/reward-lab/blob/main/notebooks/02_train_reward_model.ipynb)
#
# A reward model reads a conversation and returns **one number**: how good the last answer is. We train
# one from the pairs of notebook 01 with a widely shared recipe, done the way TRL 1.x needs it (the recipe's LoRA
# dropout 0.05 is one thing TRL quietly turns off: see `RewardConfig` below), and we check that it learned something
# on pairs it never saw. The `llama3-8b` profile is that recipe: LLaMA 3 8B loaded in 8-bit, LoRA r=8/alpha=16,
# lr 1e-5, batch 2 × accumulation 4, max_length 1024, 3 epochs. The CPU profiles (`tiny`, `smol`) keep its shape, an
# 8-bit base with LoRA, with a small model and sizes of their own.
#
# **You will learn**
# - what a reward model *is* in TRL: `AutoModelForSequenceClassification` with `num_labels=1` — a linear
#   `score` head on the last token, **not** a sum of token log-likelihoods (a common misreading);
# - the Bradley–Terry loss `-log σ(r_chosen − r_rejected)`, computed by hand and by the trainer;
# - 8-bit loading with bitsandbytes, `prepare_model_for_kbit_training`, and why LoRA needs `task_type="SEQ_CLS"`;
# - `RewardConfig` / `RewardTrainer`, evaluation at the end of each epoch (or of training, when it is shorter than
#   one), TensorBoard, and resuming after a disconnect.
#
# | profile | hardware | time |
# |---|---|---|
# | `tiny` | any CPU | 1–2 minutes |
# | `smol` | any CPU, offline | about 6 minutes on 2 CPU cores |
# | `llama3-8b` | T4 16 GB (fp16) · L4/A100 (bf16) | ~25 minutes of training on a T4 (96 steps, computed), plus the 16 GB download; peak GPU 12.8 GiB (measured on an H200 with the 8B shape; 13.1 computed) |

# %%
import os, sys
if "google.colab" in sys.modules:  # Colab: fetch the kit into /content once; elsewhere `make setup` installed it
    if not os.path.isdir("reward-lab"):
        !git clone -q --depth 1 https://github.com/reward-lab/reward-lab
    sys.path.insert(0, os.path.abspath("reward-lab"))
from helpers import setup, default_run_dir
versions = setup()  # Colab: installs the pinned libraries and mounts Google Drive for RUN_DIR

# %% tags=["parameters"]
PROFILE = os.environ.get("REWARD_LAB_PROFILE", "llama3-8b")  # "tiny" or "smol": offline CPU courses
RUN_DIR = default_run_dir()  # $REWARD_LAB_RUN_DIR; in Colab on Google Drive; else runs/default
SEED = 42
RESUME = False  # True: continue from the newest checkpoint in RUN_DIR/rm_adapter/checkpoints/
QUANTIZATION = "profile"  # "profile" (8bit), "8bit", "4bit" (QLoRA) or "none" (full-precision base)
MAX_STEPS = -1  # > 0: stop after this many optimizer steps (quick smoke runs)
DTYPE = "auto"  # "auto" (from the hardware), or force "fp16" (a T4's policy, also on CPU) or "bf16"
STORAGE_STEPS = -1  # steps of the bf16-vs-fp32 experiment; -1: the profile's storage_steps; 0: skip it

# %%
import time
import torch
from helpers import check_hardware, get_hf_token, get_profile, prepare_run_dir, set_seed
from helpers.env import dtype_policy
from helpers.data import require_notebook_inputs

overrides = {} if QUANTIZATION == "profile" else {"quantization": None if QUANTIZATION == "none" else QUANTIZATION}
profile = get_profile(PROFILE, **overrides)
run_dir = prepare_run_dir(RUN_DIR)
rm_path = profile.model_path("rm_base", run_dir)
require_notebook_inputs("02_train_reward_model", run_dir, profile)  # stops, naming the notebook to run first
hardware, dtype = check_hardware(profile), dtype_policy(DTYPE)
set_seed(SEED)  # before loading: the new score head is initialised at random
print(f"profile {profile.name}, quantization {profile.quantization}, dtype {dtype.name}: {dtype.reason}")

# %% [markdown]
# ## The data
# Notebook 01 wrote the pairs in TRL's *conversational* format: `prompt` is a list of messages, `chosen` and
# `rejected` are the assistant's answers. TRL renders `prompt + chosen` and `prompt + rejected` through the
# tokenizer's chat template, so the reward model sees exactly the format it will score later.

# %%
from datasets import load_dataset
from helpers.data import heldout_subset

train = load_dataset("json", data_files=str(run_dir / "data" / "train.jsonl"), split="train")
test = load_dataset("json", data_files=str(run_dir / "data" / "test.jsonl"), split="train")
test = heldout_subset(test, profile.heldout_limit, seed=SEED, what="held-out pairs")  # all, unless capped (smol)
print(train)
train[0]["prompt"], train[0]["chosen"], train[0]["rejected"]

# %% [markdown]
# The tokenizer needs two things: a chat template, and a **pad token that never occurs in a real sequence**. The
# rule: transformers reads the reward at the last token whose id is not `pad_token_id` (`modeling_layers.py`,
# `...ForSequenceClassification.forward`: `non_pad_mask`). So if the pad id is a token your sequences end with, the
# reward is read too early. With LLaMA 3, the common shortcut pad = EOS shows both cases:
# - LLaMA 3 *Instruct*'s EOS is `<|eot_id|>`, the token that closes every chat turn: with pad = EOS every reward is
#   read one token before the end, at the last word of the answer instead of the end of the turn;
# - the LLaMA 3 *base* tokenizer's EOS is `<|end_of_text|>`, which the chat template never writes: pad = EOS
#   reads the right token there, until a text happens to contain it.
#
# A dedicated pad token, one the chat template never writes, needs no such case analysis. LLaMA 3 reserves one for
# exactly this: `<|finetune_right_pad_id|>` (id 128004; LLaMA 3.0's tokenizer names it
# `<|reserved_special_token_2|>`).
# `prepare_reward_tokenizer` adds only what is missing. The LLaMA 3 *base* model ships neither a template nor a pad
# token (and `tiny`'s base copies that), so it gets LLaMA 3's template and that pad token. SmolLM2 (`smol`) brings its
# own ChatML template, and the kit's copy already pads with `<|endoftext|>`, which that template never writes: both
# are kept. The line below shows this profile's pad and EOS.

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
# `QUANTIZATION = "4bit"` loads NF4 weights instead (QLoRA): ~5.5 GB and a slightly noisier base; its speed per
# step against 8-bit depends on the GPU and the bitsandbytes version (both dequantise or re-quantise in every
# forward and backward pass) and this kit has not measured it on a T4: time one epoch of each if it matters to you
# (Level 1 below). `"none"` keeps the base in 16 bit (needs ~16 GB + activations).

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
    device_map={"": 0} if hardware["device"] == "cuda" else None, token=get_hf_token(), use_safetensors=True,
)
model.config.pad_token_id = tokenizer.pad_token_id  # where the reward is read: the last non-pad token
print(type(model).__name__, "| reward head:", model.score)

# %% [markdown]
# transformers printed a **load report** above (in red, on stderr), and each of its lines is expected here:
# - `lm_head.weight | UNEXPECTED`, only where the checkpoint has a separate next-token head (`tiny`, LLaMA 3 8B):
#   that head (vocabulary × hidden) has no place in a sequence classifier, so it is left out. SmolLM2 ties its head
#   to the input embeddings, so on `smol` there is no such line;
# - `score.weight | MISSING`: the reward head is new, initialised at random. Training it is the point of this
#   notebook (LoRA's `SEQ_CLS` task, below, makes it trainable and saves it with the adapter).
#
# Loading a *trained* reward model must report neither; notebook 04 shows what a `MISSING` head does to the scores.
#
# **The reward is not a log-likelihood.** A widely copied tutorial says a TRL reward model sums the token
# log-probabilities of a causal LM. It does not: the language-model head is gone, and `score` — one
# `Linear(hidden, 1)` — maps the hidden state of the *last* token to a single number. That number means nothing on its own; only
# differences between answers to the same prompt are trained.

# %%
import bitsandbytes as bnb

n_8bit = sum(isinstance(m, bnb.nn.Linear8bitLt) for m in model.modules())
n_4bit = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
print(f"{n_8bit} Linear8bitLt and {n_4bit} Linear4bit layers; "
      f"memory footprint {model.get_memory_footprint() / 2**20:.1f} MiB")

# %% [markdown]
# ## LoRA, and why `task_type="SEQ_CLS"`
# `prepare_model_for_kbit_training` freezes the int8 base and casts **every parameter that is still 16-bit** to
# fp32 (peft `utils/other.py`, `prepare_model_for_kbit_training`): not only the norms but the embeddings and the
# head, which 8-bit loading leaves unquantized. On LLaMA 3 8B that is 526 M parameters, almost all of them the
# embedding matrix: 0.98 GiB in fp16 becomes 1.96 GiB, about 1 GiB more of the T4's 15 GB (computed from the
# model's shapes, `helpers.resources.count_parameters`). The gain is fp32 activations out of the embeddings and
# steadier training. LoRA then adds small trainable matrices. `task_type="SEQ_CLS"` is not decoration: it puts the `score` head in
# `modules_to_save`, so the head is **trained and saved with the adapter**. Without it the head stays random,
# the adapter file lacks it, and the merged model scores with a random head (notebook 03 shows how
# convincing that can look).

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
# The same check catches that mistake before a single training step (this cell is meant to raise):

# %%
# NBVAL_CHECK_OUTPUT
from helpers import expect_error

with expect_error(ValueError):
    check_reward_setup(model, LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM"))

# %% [markdown]
# ## RewardConfig
# Every value comes from the profile (print `profile` to see them). Note the TRL defaults we override:
# learning rate 1e-4 → the profile's, gradient checkpointing on → the profile's, bf16 on → the dtype policy
# (fp16 on a T4). And one default we keep, written out so you see it: `disable_dropout=True` sets every dropout
# in the model to 0 once TRL has wrapped it with LoRA (`reward_trainer.py`, `disable_dropout_in_model`), LoRA's
# own dropout included, so the recipe's `lora_dropout=0.05` would never apply: the profile says 0. (Dropout makes
# the chosen and rejected passes of one pair see different networks, which adds noise to the margin.) Evaluation
# runs on the held-out split at the end of every epoch (`eval_strategy="epoch"`), and at the end of training when
# that comes first (`smol` trains for half an epoch). Checkpoints come every `save_steps`: the `llama3-8b` profile
# sets it to about ten minutes of T4 time (`helpers.resources.checkpoint_steps`), so a Colab disconnect costs at
# most that; the CPU profiles set a small fixed number (printed below). The checkpoints go to `RUN_DIR` — on Google
# Drive in Colab — and only the newest two are kept (`save_total_limit=2`): each holds the adapter and its optimizer
# state, tens of MB for the 8B profile.
#
# One setting is ours, not TRL's: `gradient_checkpointing_kwargs={"use_reentrant": True}`. Given none, transformers
# 5.23 checkpoints with `use_reentrant=False` (`modeling_utils.py`, `_activation_checkpointing_enable`). On an H200,
# with LLaMA-3-8B's shapes in 8-bit, 2 pairs of 1024 tokens, this very `RewardTrainer` set-up peaked at **31.2 GiB**
# that way and at **12.8 GiB** with reentrant checkpointing, at the same speed
# (`benchmarks/results/rm_train_llama3-8b_trainer*_cuda_2026-12-04.json`). On a T4's 15 GiB that is the difference
# between training and "CUDA out of memory".

# %%
from trl import RewardConfig
from helpers.resources import checkpoint_steps

checkpoint_dir = run_dir / "rm_adapter" / "checkpoints"
# transformers 5.23's TensorBoard writer takes its folder at the first log: our evaluation before training (below)
# comes first, and without this the events land in ./runs of the notebook's working folder, not in the run's.
os.environ["TENSORBOARD_LOGGING_DIR"] = str(checkpoint_dir / "runs")
save_steps = profile.save_steps or checkpoint_steps(profile)  # computed: ~10 minutes of T4 time per checkpoint
save_steps = max(profile.logging_steps, save_steps - save_steps % profile.logging_steps)  # all logged before a save
args = RewardConfig(
    output_dir=str(checkpoint_dir), seed=SEED, max_length=profile.max_length,
    learning_rate=profile.learning_rate, num_train_epochs=profile.num_train_epochs, max_steps=MAX_STEPS,
    per_device_train_batch_size=profile.per_device_train_batch_size,
    gradient_accumulation_steps=profile.gradient_accumulation_steps,
    per_device_eval_batch_size=profile.eval_batch_size, gradient_checkpointing=profile.gradient_checkpointing,
    gradient_checkpointing_kwargs={"use_reentrant": True},  # 12.8 GiB instead of 31.2 on the 8B shape (measured)
    bf16=dtype.bf16, fp16=dtype.fp16, use_cpu=hardware["device"] == "cpu", disable_dropout=True,
    eval_strategy="epoch", logging_steps=profile.logging_steps,
    save_strategy="steps", save_steps=save_steps, save_total_limit=2,
    report_to="tensorboard",  # event files under checkpoints/runs/
)
print(f"lr {args.learning_rate}, batch {args.per_device_train_batch_size} x {args.gradient_accumulation_steps}, "
      f"epochs {args.num_train_epochs}, bf16 {args.bf16}, fp16 {args.fp16}, checkpoint every {args.save_steps} steps")

# %%
from trl import RewardTrainer

trainer = RewardTrainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                        processing_class=tokenizer, peft_config=lora_config)
trainer.model.print_trainable_parameters()
train_pairs_used = len(trainer.train_dataset)
print(f"{train_pairs_used} training pairs after TRL's length filter "
      f"(audit predicted {audit['pairs'] - audit['over_max_length']})")

# %% [markdown]
# ## Keep the trainable weights in fp32
# Look at what `RewardTrainer` just did to a quantized model: it **cast every trainable parameter — LoRA and the
# `score` head — to bf16** (trl/trainer/reward_trainer.py: "When using QLoRA, the PEFT adapter weights are
# converted to bf16"). That breaks two things. On a T4 (`fp16=True`) the first optimizer step crashes: the CUDA
# GradScaler cannot unscale bf16 gradients (`"_amp_foreach_non_finite_check_and_unscale_cuda" not implemented for
# 'BFloat16'`). And everywhere, small updates vanish: near |w| = 0.02 two neighbouring bf16 numbers are 1.2e-4
# apart, so an AdamW step of ~1e-5 (the 8B profile's learning rate) rounds back to the same weight. So we store
# them in fp32 again before training; the matrix products still run in the fast 16-bit autocast dtype.

# %%
from helpers.train import check_trainable_fp32, keep_trainable_fp32

stored_before = keep_trainable_fp32(trainer.model)
check_trainable_fp32(trainer.model)  # what the GradScaler needs under fp16; raises otherwise
head = trainer.model.base_model.model.score.modules_to_save["default"].weight
head_before_training = head.detach().clone()
print(f"trainable values as TRL left them: {stored_before}; now all fp32; head {head.dtype}")

# %% [markdown]
# ## The Bradley–Terry loss, by hand
# The collator stacks a batch as `[chosen_1 … chosen_n, rejected_1 … rejected_n]`. One forward pass gives a
# reward per row; the loss is `-log σ(r_chosen − r_rejected)`, averaged. We compute it ourselves on one batch
# and compare with what the trainer computes on the same batch.

# %%
import torch.nn.functional as F
from helpers.train import trainer_loss_on_batch, training_autocast

batch = next(iter(trainer.get_eval_dataloader()))
trainer.model.eval()
with torch.no_grad(), training_autocast(args, trainer.model.device):
    rewards = trainer.model(input_ids=batch["input_ids"].to(trainer.model.device),
                            attention_mask=batch["attention_mask"].to(trainer.model.device)).logits.squeeze(-1)
r_chosen, r_rejected = rewards.chunk(2)  # kept in the autocast dtype, exactly as the trainer computes
by_hand = -F.logsigmoid(r_chosen - r_rejected).mean().float()  # the Bradley-Terry loss: the whole of it
by_trainer = trainer_loss_on_batch(trainer, batch)
print(f"by hand {by_hand.item():.6f}  trainer {by_trainer.item():.6f}  (untrained: near log 2 = 0.693, lower where "
      "the random head already favours the chosen answers)")
assert torch.allclose(by_hand, by_trainer, atol=1e-6), "the trainer's loss should be Bradley-Terry"

# %% [markdown]
# ## Train
# `RESUME = True` picks the newest checkpoint in `RUN_DIR/rm_adapter/checkpoints/` and continues from it
# (optimizer, scheduler, data order and RNG state included), so a disconnect costs at most `save_steps`.

#
# A disconnect *during* a save leaves a half-written `checkpoint-N/` (adapter files, no `trainer_state.json`, which
# the Trainer writes last). `latest_checkpoint` skips such folders, says so, and takes the newest complete one.

# %%
from helpers.train import latest_checkpoint, whole_run_loss

resume_from = latest_checkpoint(checkpoint_dir) if RESUME else None
print(f"resuming from {resume_from}" if resume_from else "training from the start")
before_training = None
if not resume_from:  # the curves' first point: the held-out split before any training step (a random head)
    before_training = trainer.evaluate()
    print(f"before training: held-out accuracy {before_training['eval_accuracy']:.3f}, "
          f"loss {before_training['eval_loss']:.3f} (log 2 = 0.693)")
train_result = trainer.train(resume_from_checkpoint=resume_from)
head_moved = (head.detach() != head_before_training).float().mean().item()
assert head_moved > 0.5, f"only {head_moved:.0%} of the head's entries changed: the updates were lost"
start_step = int(resume_from.rsplit("-", 1)[1]) if resume_from else 0  # checkpoint-N resumes after step N
train_loss = whole_run_loss(trainer.state.log_history, train_result.metrics["train_loss"], start_step)
print(f"{head_moved:.0%} of the head's entries changed; training loss over the whole run {train_loss:.4f}")
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
# Curves first, each with its chance level dotted: the loss starts near log 2 ≈ 0.69 (a coin flip) and falls; on
# the held-out split, accuracy starts where the random head lands (the point at step 0, printed above) and rises,
# and the margin `r_chosen − r_rejected` grows from about 0. On the tiny model that start is near 0.5. On a real
# model (`smol`) it can sit well away from 0.5, either way: the head is random, but the hidden states it reads
# are a trained model's, and a random direction through them already tells some answers apart.

# %%
from helpers.plots import plot_training_curves, save_figure
from helpers.train import split_history

curves = split_history(trainer.state.log_history, before_training)
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

# %% [markdown]
# This accuracy need not equal the last point of the accuracy curve above. The curve is what `RewardTrainer` logs:
# it evaluates only the held-out pairs within `max_length` (it drops the others from the evaluation split exactly as
# from the training split), computes the accuracy of each evaluation batch of `per_device_eval_batch_size` pairs,
# and logs the **mean of those batch accuracies** (TRL's `reward_trainer.py`: `compute_loss` appends one accuracy
# per batch, `log` averages the list), so a short last batch counts as much as a full one. Above, every held-out
# pair counts once.
#
# With an 8-bit base there is a second reason: **a reward depends on the batch it is computed in.** LLM.int8 keeps
# every input column that holds a value of 6 or more (`llm_int8_threshold=6.0`) out of the int8 product, and it
# picks those columns over the whole batch, padding rows included (bitsandbytes 0.50, `backends/default/ops.py`
# line 156 and `backends/cuda/ops.py` line 233: `outliers.any(dim=0)`); on a CPU the int8 product is moreover an
# fp32 matmul (`ops.py` line 136), whose rounding depends on the matrix shapes. TRL puts each batch's chosen and
# rejected answers into one padded forward pass; `score_pairs` above scores each side in its own batches, shortest
# first. Same weights, other batch partners, slightly different rewards, and a pair whose margin is smaller than
# that difference can change sides. On `smol` (SEED 42) margins moved by up to 0.43 between batchings, against a
# median margin of 0.45 after half an epoch, and the accuracy moved by 3 of 42 pairs
# (`benchmarks/bench_int8_batching.py`); the same trained adapter on the full-precision base gave the same margins
# (to 1e-5) however it was batched. One more reason
# notebook 03 merges into a full-precision base: its scores do not depend on the batch.
#
# Both effects, on this run's own numbers. First TRL's averaging, applied to our per-pair scores:

# %%
from helpers.audit import token_lengths

right = scores["chosen"] > scores["rejected"]
kept = np.all([np.array(n) <= args.max_length for n in token_lengths(test, tokenizer).values()], axis=0)
assert kept.sum() == len(trainer.eval_dataset), "these are not the held-out pairs TRL kept"
size = args.per_device_eval_batch_size
per_batch = [float(right[kept][i:i + size].mean()) for i in range(0, int(kept.sum()), size)]
trainer_recipe = float(np.mean(per_batch))
steps, accuracies = curves["eval"].get("step", []), curves["eval"].get("accuracy", [])
curve_last = accuracies[-1] if accuracies else None
print(f"the curve's last point (step {steps[-1]}): {curve_last:.3f}" if accuracies else "no evaluation was logged")
print(f"TRL's recipe from our scores: {kept.sum()} of {len(test)} pairs, batch accuracies {np.round(per_batch, 3)}, "
      f"mean {trainer_recipe:.3f}")
print(f"every pair counted once: {right[kept].mean():.3f} on those {kept.sum()}, {right.mean():.3f} on all {len(test)}")

# %% [markdown]
# Then TRL's own batches (its tokenised evaluation split, `trainer.eval_dataset`), each batch's chosen and rejected
# answers padded together, recomputed with our forward pass. If they reproduce the curve's point, whatever
# separates it from the recipe above is the batching:

# %%
from helpers.score import trainer_batch_accuracies

as_trainer = trainer_batch_accuracies(trainer.model, tokenizer.pad_token_id, trainer.eval_dataset["chosen_ids"],
                                      trainer.eval_dataset["rejected_ids"], size)
trainer_batches = float(np.mean(as_trainer))
print(f"TRL's batches (each batch's chosen and rejected padded together), our forward pass: batch accuracies "
      f"{np.round(as_trainer, 3)}, mean {trainer_batches:.3f}")
if curve_last is not None:
    print("TRL's batches reproduce the curve's point" if abs(trainer_batches - curve_last) <= 1e-6 else
          f"TRL's batches give {trainer_batches:.3f}, not the curve's {curve_last:.3f}: something else differs "
          "between the trainer's evaluation and this one")
if abs(trainer_batches - trainer_recipe) > 1e-6:
    print(f"the batching alone moved the accuracy by {trainer_batches - trainer_recipe:+.3f} "
          f"({profile.quantization or 'no'} quantization)")

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

# %% [markdown]
# ## Why fp32 storage matters: the experiment
# The trained model is saved, so we free it (on a T4 two 8B models do not fit) and run the same training twice
# from the same start, at the `llama3-8b` profile's learning rate (1e-5) for `STORAGE_STEPS` steps: once with
# the trainable weights stored in bf16 as TRL leaves them, once in fp32 as above. We count how many entries of
# the head and of the LoRA matrices changed at all, and score the held-out pairs. (`smol` skips it by default: on a
# real model each run costs minutes of CPU; the `tiny` and GPU profiles run it, and `STORAGE_STEPS = 4` runs it here.)

# %%
import gc

del trainer, model
gc.collect()
if torch.cuda.is_available():
    torch.cuda.empty_cache()
gpu_lr = get_profile("llama3-8b").learning_rate
steps = profile.storage_steps if STORAGE_STEPS == -1 else STORAGE_STEPS
print(f"two runs of {steps} steps at lr {gpu_lr}" if steps else
      f"skipped (profile {profile.name}: storage_steps 0, to keep the course short); STORAGE_STEPS = 4 runs it")

# %%
import dataclasses
import tempfile

def fresh_trainer():
    set_seed(SEED)
    fresh = AutoModelForSequenceClassification.from_pretrained(
        rm_path, num_labels=1, quantization_config=bnb_config, dtype=dtype.dtype,
        device_map={"": 0} if hardware["device"] == "cuda" else None, token=get_hf_token(), use_safetensors=True)
    fresh.config.pad_token_id = tokenizer.pad_token_id
    if bnb_config is not None:
        fresh = prepare_model_for_kbit_training(fresh, use_gradient_checkpointing=profile.gradient_checkpointing)
    quick_args = dataclasses.replace(args, output_dir=tempfile.mkdtemp(), learning_rate=gpu_lr, num_train_epochs=1, max_steps=steps,
                                     gradient_accumulation_steps=1,
                                     eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True)
    return RewardTrainer(model=fresh, args=quick_args, train_dataset=train, processing_class=tokenizer,
                         peft_config=lora_config)

# %%
from helpers.train import storage_experiment

storage = storage_experiment(fresh_trainer, test, batch_size=profile.eval_batch_size) if steps else {}
for name, result in storage.items():
    print(f"stored in {name:8}: " + (result["error"] if "error" in result else
          f"head entries changed {result['head_changed']:.0%}, LoRA entries changed {result['lora_changed']:.0%}, "
          f"held-out accuracy {result['accuracy']:.3f}"))

# %% [markdown]
# Where the experiment ran (by default on `tiny` and `llama3-8b`; on `smol` only with `STORAGE_STEPS = 4`, and a line
# further up says when it was skipped), read the two lines. Stored in bf16, most updates are rounded away: a large
# share of the head never moves at all — on a T4 under fp16 this run would not even start (the bf16 line then shows
# the error). Stored in fp32, every entry moves. After so few steps at 1e-5 neither run has learned much yet, so
# both accuracies stay near the untrained model's and may come out in either order: what differs is whether the
# updates land at all, and over the 8B profile's 3 epochs that difference accumulates. (On a T4 the two short runs
# take several minutes each; `STORAGE_STEPS = 0` skips them.)

# %%
from helpers import save_metrics

metrics = {
    "eval_accuracy": eval_accuracy, "eval_margin": eval_margin, "test_pairs": len(test),
    "eval_pairs_trainer": int(kept.sum()), "eval_accuracy_trainer_recipe": trainer_recipe,
    "eval_accuracy_trainer_logged": curve_last, "eval_accuracy_trainer_batches": trainer_batches,
    "profile": profile.name,
    "eval_accuracy_before": before_training["eval_accuracy"] if before_training else None,
    "train_loss": train_loss, "train_loss_this_session": train_result.metrics["train_loss"],
    "train_runtime_s": train_result.metrics["train_runtime"], "head_entries_changed": head_moved,
    "trainable_dtype_from_trl": stored_before, "storage_experiment": storage, "save_steps": args.save_steps,
    "train_pairs_used": train_pairs_used, "dropped_over_max_length": audit["over_max_length"],
    "quantization": profile.quantization, "dtype": dtype.name, "linear8bit_layers": n_8bit,
    "linear4bit_layers": n_4bit, "bt_loss_by_hand": by_hand.item(), "bt_loss_trainer": by_trainer.item(),
    "head_keys_saved": head_keys, "resumed_from": resume_from, "eval_by_epoch": curves["eval"],
}
save_metrics(run_dir, "02_train_reward_model", metrics)
{k: metrics[k] for k in ("eval_accuracy", "eval_margin", "train_loss", "train_runtime_s", "dropped_over_max_length")}

# %% [markdown]
# ## Try it
# Level 1: what probability does the Bradley–Terry model give the chosen answer when its reward is 1.0 above the
# rejected one? Level 2: how many held-out pairs did *this* run's model rank the wrong way (from the numbers
# above)? Each has a check cell: *not attempted yet* while `answer` is `None`, a hint on a wrong answer.
# Solutions for instructors: `notebooks/solutions.py`.
#
# To explore (no check): set `QUANTIZATION = "4bit"` and compare accuracy and the time per step. Resume: set
# `MAX_STEPS = 8` and run; then set `RESUME = True` **and** `MAX_STEPS = 16` and run again: training continues from
# step 8 (with `MAX_STEPS` unchanged the resumed run is already finished and trains nothing). Add a `margin` column
# (e.g. from a rating gap, notebook 01's `MARGIN`): TRL then minimises `-log σ(r_c − r_r − margin)`.

# %%
from helpers.exercises import check_exercise

answer = None  # Level 1: a probability
check_exercise("02.1", answer, run_dir, profile)

# %%
from helpers.exercises import check_exercise

answer = None  # Level 2: a number of pairs
check_exercise("02.2", answer, run_dir, profile)

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
