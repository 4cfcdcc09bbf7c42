# %% [markdown]
# # 05 · KTO: align a policy from thumbs-up / thumbs-down data
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/reward-lab/reward-lab/blob/main/notebooks/05_kto_unpaired.ipynb)
#
# Notebooks 02–04 built a reward model from *pairs*. Much real feedback is not paired: a user clicks 👍 or 👎 on
# one answer. **KTO — Kahneman–Tversky Optimization** (Ethayarajh et al., 2024) trains a policy directly from such
# rows: `(prompt, completion, label)`, no second answer needed. (Some tutorials expand it as "Knowledge Transfer
# Optimization": that is not what the K and T stand for.) We train a chat policy with TRL's `KTOTrainer` on the
# unpaired rows of notebook 01, then ask the reward model of notebook 03 whether the policy got better.
#
# **You will learn**
# - the Kahneman–Tversky value function behind KTO, its KL *reference point*, and why unpaired rows are enough;
# - how KTO differs from the Bradley–Terry reward model of notebook 02;
# - why `per_device_train_batch_size` must be > 1, why batches should (not must) hold both labels, and how to weight an
#   imbalanced dataset so that λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3] (KTO paper, Eq. 8);
# - `BitsAndBytesConfig` 8-bit + `LoraConfig(task_type="CAUSAL_LM")` + `KTOConfig` / `KTOTrainer`, with the base
#   model (adapters disabled) as the reference;
# - an evaluation that closes the loop: held-out implicit rewards, generations before and after, judged by the RM.
#
# | profile | hardware | time |
# |---|---|---|
# | `tiny` | any CPU | about 2 minutes |
# | `smol` | any CPU, offline (Colab: from the Hub) | about 6 minutes on 2 cores |
# | `llama3-8b` | T4 16 GB (fp16) · L4/A100 (bf16) | not yet measured: tens of minutes per epoch on a T4, a few on an A100; computed peak GPU 12.3 GiB |

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
POLICY = "profile"  # the profile's policy_base, or a hub id of another chat model
N_EVAL_PROMPTS = 16  # held-out prompts answered before and after training, judged by the reward model
MAX_STEPS = -1  # > 0: stop after this many optimizer steps (quick smoke runs)
DTYPE = "auto"  # "auto" (from the hardware), or force "fp16" (a T4's policy, also on CPU) or "bf16"

# %%
import time
import torch
from helpers import check_hardware, get_hf_token, get_profile, prepare_run_dir, set_seed
from helpers.env import dtype_policy
from helpers.data import require_notebook_inputs

start = time.perf_counter()
profile = get_profile(PROFILE, **({} if POLICY == "profile" else {"policy_base": POLICY}))
run_dir = prepare_run_dir(RUN_DIR)
policy_path = profile.model_path("policy_base", run_dir)
require_notebook_inputs("05_kto_unpaired", run_dir, profile)  # stops, naming the notebook to run first
hardware, dtype = check_hardware(profile), dtype_policy(DTYPE)
set_seed(SEED)  # before loading: LoRA's A matrices are initialised at random
print(f"profile {profile.name}: policy {profile.policy_base}, {profile.quantization}, dtype {dtype.name}: {dtype.reason}")

# %% [markdown]
# ## What KTO optimises
# **Prospect theory.** Kahneman and Tversky found that people judge an outcome as a *gain or a loss relative to a
# reference point*, not by its absolute size, and that losses hurt more than equal gains please (loss aversion).
# Their value function is concave for gains and steeper and convex for losses, e.g. $v(z) = z^{0.88}$ for $z \ge 0$
# and $v(z) = -2.25\,(-z)^{0.88}$ for $z < 0$.
#
# **KTO's version.** The "outcome" of a completion $y$ to a prompt $x$ is the policy's *implicit reward*, the same one
# DPO uses: $r_\theta(x, y) = \log \frac{\pi_\theta(y|x)}{\pi_\text{ref}(y|x)}$ — how much more likely the trained
# policy makes $y$ than the reference model did. The reference point is how far the policy has drifted overall,
# $z_0 = \mathrm{KL}(\pi_\theta \,\|\, \pi_\text{ref})$, estimated in each batch from *mismatched* pairs (the prompt of
# row $i$ with the completion of row $i-1$), clamped at 0 and not back-propagated. A logistic replaces the power law:
#
# $$v(x,y) = \begin{cases} \lambda_D\,\sigma\big(\beta\,(r_\theta(x,y) - z_0)\big) & y \text{ desirable} \\
#   \lambda_U\,\sigma\big(\beta\,(z_0 - r_\theta(x,y))\big) & y \text{ undesirable}\end{cases}
# \qquad L_\text{KTO} = \mathbb{E}\big[\lambda_y - v(x,y)\big]$$
#
# exactly what `KTOTrainer` computes: `1 - sigmoid(beta * (logratio - kl))` for desirable rows,
# `1 - sigmoid(beta * (kl - logratio))` for undesirable ones, weighted by `desirable_weight` / `undesirable_weight`.
#
# **Why unpaired rows are enough.** Each row's loss needs only its own label and $z_0$. The reference point plays
# the role the *other* answer plays in a pair: a desirable completion gains only if its reward rises above the
# batch's typical drift, an undesirable one only if it falls below it. Raising every completion at once raises
# $z_0$ too, and gains nothing. That is also why a batch of **one** row cannot work (its mismatched completion is
# itself, so $z_0$ equals its own reward). Labels play no part in $z_0$: a batch of one label still trains, but
# all its rows push the same way, so batches holding **both labels** give steadier updates (notebook 01 ordered
# them so; `check_kto_setup` warns, and says why, when some batches do not).
#
# **How this differs from notebook 02.** The Bradley–Terry reward model is a separate network (a `score` head)
# trained on *pairs* with $-\log\sigma(r(x, y_c) - r(x, y_r))$; a policy must then be optimised against it (best-of-n,
# PPO). KTO trains the **policy itself**, with no reward network and no sampling during training; its "reward" is
# implicit in the log-ratio to the reference. So the reward model of notebook 03 is an *independent judge* here.

# %% [markdown]
# ## The unpaired data
# Notebook 01 wrote the rows in TRL's conversational unpaired format (`prompt`, `completion`, `label`) in a
# training order made by `mix_unpaired`: rows derived from the pairs (one desirable, one undesirable each) plus
# the kit's natively unpaired rows, which are mostly undesirable — so the whole set is imbalanced.

# %%
from datasets import load_dataset
from helpers.data import heldout_subset

train = load_dataset("json", data_files=str(run_dir / "data" / "unpaired_train.jsonl"), split="train")
test = load_dataset("json", data_files=str(run_dir / "data" / "unpaired_test.jsonl"), split="train")
test = heldout_subset(test, profile.heldout_limit, seed=SEED)  # all rows, unless the profile caps them (smol)
train[0]["prompt"], train[0]["completion"], train[0]["label"]

# %%
# NBVAL_CHECK_OUTPUT
from collections import Counter

for name, part in (("train", train), ("test", test)):
    counts = Counter(zip(part["source"], part["label"]))
    print(f"{name:5} {len(part)} rows: " + ", ".join(f"{s}/{'desirable' if l else 'undesirable'} {n}"
                                                    for (s, l), n in sorted(counts.items())))

# %% [markdown]
# TRL's KTO sampler is **sequential** (`train_sampling_strategy="sequential"`, the `KTOConfig` default): batches are
# consecutive rows, because the KL completions are paired within each batch. So the order on disk *is* the batch
# composition. `mix_unpaired` put at least one row of each label in every batch of `kto_batch_size` rows:

# %%
# NBVAL_CHECK_OUTPUT
from helpers.kto import batches_with_both_labels

labels = train["label"]
print("first batches (1 = desirable):", [[int(x) for x in labels[i:i + profile.kto_batch_size]]
                                         for i in range(0, 3 * profile.kto_batch_size, profile.kto_batch_size)])
print("batches with both labels:", batches_with_both_labels(train, profile.kto_batch_size))

# %% [markdown]
# ## Class weights for the imbalance (KTO paper, Eq. 8)
# With $n_D$ desirable and $n_U$ undesirable rows, the paper recommends weights with
# $$1 \le \frac{\lambda_D\, n_D}{\lambda_U\, n_U} \le \frac{4}{3}.$$
# `kto_class_weights` keeps one weight at 1.0 and puts the ratio at 7/6, the middle of the band.

# %%
# NBVAL_CHECK_OUTPUT
from helpers.kto import kto_class_weights

n_desirable, n_undesirable = sum(train["label"]), len(train) - sum(train["label"])
desirable_weight, undesirable_weight = kto_class_weights(n_desirable, n_undesirable)
ratio = desirable_weight * n_desirable / (undesirable_weight * n_undesirable)
print(f"n_D = {n_desirable}, n_U = {n_undesirable}: desirable_weight = {desirable_weight}, "
      f"undesirable_weight = {undesirable_weight}")
print(f"λ_D·n_D / (λ_U·n_U) = {desirable_weight} × {n_desirable} / ({undesirable_weight} × {n_undesirable}) "
      f"= {ratio:.3f}  in [1, 1.333]: {1 <= ratio <= 4 / 3}")

# %% [markdown]
# ## The policy, in 8-bit
# The policy is a chat (instruct) model: on `tiny` the Qwen2-style model built by notebook 00, on `smol`
# SmolLM2-135M-Instruct (also the reward model's base: a separate copy, with its own LoRA), on the GPU profile
# `profile.policy_base` (or the hub id you put in `POLICY`). As in notebook 02 its linear layers are loaded as
# int8 (`Linear8bitLt`, which also runs on CPU), and only small LoRA matrices are trained. This time the model is
# a **causal LM**: KTO scores completions by their token log-probabilities, so we keep the language-model head.

# %%
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

tokenizer = AutoTokenizer.from_pretrained(policy_path, token=get_hf_token())
bnb_config = BitsAndBytesConfig(load_in_8bit=True) if profile.quantization == "8bit" else None
model = AutoModelForCausalLM.from_pretrained(
    policy_path, quantization_config=bnb_config, dtype=dtype.dtype,
    device_map={"": 0} if hardware["device"] == "cuda" else None, token=get_hf_token(), use_safetensors=True,
)
print(type(model).__name__, f"| memory {model.get_memory_footprint() / 2**20:.1f} MiB",
      f"| eos {tokenizer.eos_token!r}, pad {tokenizer.pad_token!r}")

# %% [markdown]
# ## LoRA: `task_type="CAUSAL_LM"`
# In notebook 02 the task was `SEQ_CLS` (train and save the `score` head). Here there is no head to add: the
# adapter changes how likely the policy makes each token, so the task is `CAUSAL_LM`. `prepare_model_for_kbit_training`
# freezes the int8 base and casts every parameter still in 16 bit to fp32 (the embeddings, which this model
# shares with its output layer, and the norms): on Llama 3.2 3B, 394 M parameters, 0.73 GiB more on the GPU
# (computed from its shapes, `helpers.resources.count_parameters`). We do **not** wrap the model ourselves: `KTOTrainer` does it from
# `peft_config`, which matters for the reference model (below).

# %%
from peft import LoraConfig, prepare_model_for_kbit_training

if bnb_config is not None:
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=profile.gradient_checkpointing)
lora_config = LoraConfig(r=profile.lora_r, lora_alpha=profile.lora_alpha, lora_dropout=profile.lora_dropout,
                         target_modules=list(profile.lora_target_modules), task_type="CAUSAL_LM")
lora_config

# %% [markdown]
# ## KTOConfig
# `beta` is the β above: larger β keeps the policy closer to the reference. The batch size is the profile's
# `kto_batch_size` — the size `mix_unpaired` ordered the rows for — and must be at least 2. Note the TRL defaults
# we override: learning rate 1e-6 → the profile's (LoRA needs a larger one), gradient checkpointing on → the
# profile's, bf16 on → the dtype policy (fp16 on a T4; on CPU bf16 autocast, which needs `use_cpu=True`). Kept and
# written out: `disable_dropout=True`, which zeroes every dropout once TRL has wrapped the model, LoRA's included
# (`kto_trainer.py`, `disable_dropout_in_model`), so the profile's `lora_dropout` is 0.

# %%
from trl import KTOConfig

args = KTOConfig(
    output_dir=str(run_dir / "kto_adapter" / "checkpoints"), seed=SEED, beta=profile.kto_beta,
    desirable_weight=desirable_weight, undesirable_weight=undesirable_weight,
    per_device_train_batch_size=profile.kto_batch_size,
    gradient_accumulation_steps=profile.gradient_accumulation_steps,
    learning_rate=profile.kto_learning_rate, num_train_epochs=profile.kto_epochs, max_steps=MAX_STEPS,
    max_length=profile.max_length, gradient_checkpointing=profile.gradient_checkpointing,
    gradient_checkpointing_kwargs={"use_reentrant": True},  # as in notebook 02: far less GPU memory in 8-bit
    bf16=dtype.bf16, fp16=dtype.fp16, use_cpu=hardware["device"] == "cpu", disable_dropout=True,
    logging_steps=profile.logging_steps, save_strategy="no", report_to="none",
)
print(f"beta {args.beta}, weights D {args.desirable_weight} / U {args.undesirable_weight}, batch "
      f"{args.per_device_train_batch_size} x {args.gradient_accumulation_steps}, lr {args.learning_rate}, "
      f"epochs {args.num_train_epochs}, sampler {args.train_sampling_strategy}, bf16 {args.bf16}, fp16 {args.fp16}")

# %% [markdown]
# ## Pre-flight checks
# TRL refuses a batch of one, but only while the trainer is being built; it merely *warns* about weights outside
# the Eq. 8 band, and says nothing at all about single-label batches. `check_kto_setup` checks all of it before any model
# work, and each message names the fix.

# %%
# NBVAL_CHECK_OUTPUT
from helpers.kto_train import check_kto_setup

check_kto_setup(args, train)

# %% [markdown]
# The same check with a batch of one row (this cell is *meant* to fail, and shows the message):

# %%
# NBVAL_CHECK_OUTPUT
import dataclasses
from helpers import expect_error

with expect_error(ValueError):
    check_kto_setup(dataclasses.replace(args, per_device_train_batch_size=1), train)

# %% [markdown]
# ## KTOTrainer, and the reference model
# KTO needs $\pi_\text{ref}$, the model as it was before training. We pass **no** `ref_model`: with `peft_config`,
# TRL wraps the model in LoRA and computes reference log-probabilities by running the **same model with its
# adapters disabled**. The int8 base is frozen, so "adapters off" *is* the starting model — exactly, not
# approximately — and no second copy of the weights is loaded (for an 8B model, that is ~9 GB saved).

# %%
from trl import KTOTrainer

from helpers.train import check_trainable_fp32, keep_trainable_fp32

trainer = KTOTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer, peft_config=lora_config)
stored_before = keep_trainable_fp32(trainer.model)  # TRL made them bf16: see notebook 02 for why that fails
check_trainable_fp32(trainer.model)
print(f"trainable values as TRL left them: {stored_before}; now fp32")
trainer.model.print_trainable_parameters()
print("separate reference model loaded:", trainer.ref_model is not None)

# %% [markdown]
# Now the batches exactly as training will see them, from the trainer's own dataloader (after TRL's tokenisation and
# any length filtering): (desirable, undesirable) rows per batch.

# %%
# NBVAL_CHECK_OUTPUT
from helpers.kto_train import labels_per_batch

per_batch = labels_per_batch(trainer.get_train_dataloader())
both_in_loader = sum(d > 0 and u > 0 for d, u in per_batch)
print(f"{both_in_loader} of {len(per_batch)} training batches hold both labels; first five: {per_batch[:5]}")

# %% [markdown]
# ## Before training: the implicit reward is zero
# LoRA starts with $B = 0$, so the policy *is* the reference and $r_\theta = \log \pi_\theta/\pi_\text{ref} = 0$
# for every row, by construction (and so is $\beta\,r_\theta$, the implicit reward TRL logs). `implicit_rewards`
# computes $\beta\,r_\theta$ with one helper: log-probs of each completion with the adapter on (policy) and off
# (reference), summed over completion tokens, as KTO does. On the first 32 held-out rows (zero is zero; all of them
# are scored after training):

# %%
from helpers.kto_train import implicit_rewards

sample = test.select(range(min(32, len(test))))
held_out_before = implicit_rewards(trainer.model, tokenizer, sample, beta=args.beta, max_length=args.max_length)
print(f"{len(sample)} held-out rows: max |implicit reward| before training = "
      f"{abs(held_out_before['rewards']).max():.1e}")

# %% [markdown]
# ## Train
# Watch the log lines. `rewards/chosen` and `rewards/rejected` are β·log π_θ/π_ref averaged over a batch's desirable
# and undesirable rows, `rewards/margins` the first minus the second. KTO's loss pushes each desirable row's reward
# above the reference point $z_0$ and each undesirable row's below it, but both go through the same weights, and
# consecutive log lines average different rows: pushing undesirable completions down can pull desirable ones down,
# so `rewards/chosen` need not rise. What the loss asks for is the gap, desirable above undesirable: a positive
# `rewards/margins`. `kl` is $z_0$ in nats (the rewards are β × nats): in each batch the mean of log π_θ − log π_ref
# over the mismatched completions, **clamped at 0** (TRL's `kto_trainer.py`: `.clamp(min=0)`), and each log line
# averages `logging_steps` batches. It is noisy, because a batch estimates it from only `kto_batch_size` mismatched
# pairs, and a 0 means that every batch behind that log line came out negative: on average the policy made the
# mismatched completions *less* likely than the reference did.

# %%
train_result = trainer.train()
{k: round(v, 4) for k, v in train_result.metrics.items() if isinstance(v, float)}

# %%
from helpers.kto_train import plot_kto_curves
from helpers.plots import save_figure

fig = plot_kto_curves(trainer.state.log_history)
save_figure(fig, run_dir, "05_kto_curves")
fig

# %% [markdown]
# The same log lines as numbers, so you can read what this run did rather than what a run "should" do:

# %%
from helpers.train import split_history

logged = split_history(trainer.state.log_history)["train"]
for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl"):
    print(f"{key:16}", " ".join(f"{v:+.2f}" for v in logged[key]))
kl_at_zero = sum(v == 0 for v in logged["kl"])
print(f"kl is 0 (every batch's estimate clamped) in {kl_at_zero} of {len(logged['kl'])} log lines")

# %% [markdown]
# ## Did it learn? Held-out implicit rewards
# Before training the implicit-reward margin is 0 *by construction*, so "it went up from 0" would prove little. We
# compare something that exists before training: the model's own **log-likelihood margin** on held-out rows,
# mean $\log\pi(y|x)$ over desirable completions minus the mean over undesirable ones — under the reference
# (before) and under the trained policy (after). The difference after − before is exactly the held-out
# implicit-reward margin divided by β; it is positive only if, on rows never trained on, the policy moved
# probability toward desirable completions and away from undesirable ones. (On the kit's data the margin itself is
# negative: a log-likelihood is a sum of negative terms, one per token, and the desirable answers are longer.)

# %%
from helpers.kto_train import desirable_margin

held_out = implicit_rewards(trainer.model, tokenizer, test, beta=args.beta, max_length=args.max_length)
margin_before = desirable_margin(held_out["reference"], test["label"])
margin_after = desirable_margin(held_out["policy"], test["label"])
implicit_margin = desirable_margin(held_out["rewards"], test["label"])
print(f"{len(test)} held-out rows ({sum(test['label'])} desirable): log-likelihood margin "
      f"{margin_before:.2f} before -> {margin_after:.2f} after ({margin_after - margin_before:+.2f} nats)")
print(f"implicit-reward margin β·Δ = {implicit_margin:.3f} (β × {margin_after - margin_before:.2f})")

# %% [markdown]
# The same per row: the implicit reward β·log(π/π_ref) of every held-out completion, by label. Before training every
# row sits at 0 (the dotted line); after, desirable rows should lie to the right of undesirable ones.

# %%
from helpers.plots import plot_implicit_rewards

fig = plot_implicit_rewards(held_out["rewards"], test["label"])
save_figure(fig, run_dir, "05_implicit_rewards")
fig

# %% [markdown]
# The same implicit-reward margin per source: rows derived from the pairs, and the natively unpaired rows (other
# prompts, another mix of labels). Both should be positive if what was learned is not tied to one kind of row.

# %%
import numpy as np

by_source = {}
for source in sorted(set(test["source"])):
    rows = np.array(test["source"]) == source
    by_source[source] = desirable_margin(held_out["rewards"][rows], np.array(test["label"])[rows])
{source: round(m, 3) for source, m in by_source.items()}

# %% [markdown]
# ## Close the loop: generate, and let the reward model judge
# The policy's held-out prompts are answered twice, greedily: **before** = the reference (the same model inside
# `trainer.model.disable_adapter()`), **after** = the trained adapter. Both sets are then scored by the merged
# reward model of notebook 03, which never saw KTO. (On `tiny` the policy has 1.5 million parameters, so
# neither set of answers is good prose: what you check there is the mechanics, and whether the judge's scores move.
# On `smol` the starting policy is a real instruct model: fluent English, sometimes wrong, and no Chinese — it
# answers Chinese prompts in English or loops.)

# %%
from helpers.kto_train import generate_responses

prompts = list({str(p): p for p in test["prompt"]}.values())[:N_EVAL_PROMPTS]
with trainer.model.disable_adapter():
    before = generate_responses(trainer.model, tokenizer, prompts, profile.max_new_tokens)
after = generate_responses(trainer.model, tokenizer, prompts, profile.max_new_tokens)
for prompt, b, a in list(zip(prompts, before, after))[:2]:
    print(f"PROMPT {prompt[-1]['content']!r}\n  before: {b[:160]!r}\n  after:  {a[:160]!r}")

# %% [markdown]
# On the GPU profile the policy and the 8B reward model do not fit a T4 together: save the adapter and free the
# policy first, then load the reward model (in 8-bit there, as in notebook 04).

# %%
import gc

adapter_dir = run_dir / "kto_adapter"
trainer.save_model(str(adapter_dir))
print(sorted(p.name for p in adapter_dir.iterdir() if p.is_file()))
del trainer, model
gc.collect()
if torch.cuda.is_available():
    torch.cuda.empty_cache()

# %%
from helpers.kto_train import win_rate
from helpers.score import RewardScorer

score_quantization = None if profile.is_local or hardware["gpu_memory_gib"] >= 38 else "8bit"
from helpers.merge_shards import ensure_merged_model

merged_dir = ensure_merged_model(run_dir, profile, token=get_hf_token())  # Colab: rebuilt on this runtime's disk
scorer = RewardScorer.from_pretrained(merged_dir, quantization=score_quantization)
rm_before = scorer.score_batch(list(zip(prompts, before)), progress=True)
rm_after = scorer.score_batch(list(zip(prompts, after)), progress=True)
rm_win_rate = win_rate(rm_after, rm_before)
print(f"{len(prompts)} prompts: mean reward {rm_before.mean():.3f} before -> {rm_after.mean():.3f} after "
      f"({rm_after.mean() - rm_before.mean():+.3f}); RM prefers after in {rm_win_rate:.0%}")

# %% [markdown]
# Read these numbers with care, and read the answers. A rising reward is only good news if the answers got
# better. Three measures of the answers themselves, before and after: their length, how varied they are across
# prompts (distinct-2: distinct word pairs over all word pairs; near 0 means every prompt gets the same words),
# and how many prompts got an answer some other prompt also got, word for word:

# %%
from collections import Counter
from helpers.diagnose import distinct_n
from helpers.plots import plot_before_after

def answer_stats(answers, rewards):
    repeated = sum(n for n in Counter(answers).values() if n > 1)
    return {"RM reward (mean)": float(np.mean(rewards)),
            "answer length (words)": float(np.mean([len(a.split()) for a in answers])),
            "distinct-2": distinct_n(answers, 2), "prompts sharing an answer": repeated}

stats_before, stats_after = answer_stats(before, rm_before), answer_stats(after, rm_after)
for key in stats_before:
    print(f"{key:27} {stats_before[key]:8.3f} -> {stats_after[key]:8.3f}")
print("most common answers after:", Counter(after).most_common(2))
fig = plot_before_after(stats_before, stats_after, title="policy answers judged by the reward model")
save_figure(fig, run_dir, "05_before_after")
fig

# %% [markdown]
# What to look for is the central danger of RLHF: **over-optimisation**. A reward model is a proxy, valid near the
# data it was trained on: push a policy far enough and the proxy and the goal part ways (Gao et al., 2023, *Scaling
# Laws for Reward Model Overoptimization*). Its signature here would be the reward going up while distinct-2 falls
# and more prompts share an answer: the policy found one style the reward model scores highly, whatever the
# prompt. KTO never saw the reward model; where the two agree, a likely reason is that both learned from the same
# data, so the surface features KTO copied from the "desirable" answers are the ones the reward model rewards.
# The cell below reads this run's numbers (they differ from seed to seed and between profiles):

# %%
from helpers.diagnose import describe_answer_change

reading = describe_answer_change(stats_before, stats_after, rm_win_rate)
print("\n".join(reading))

# %% [markdown]
# Whatever the reading, check it against the answers printed above: on `tiny` (a 1.5-million-parameter policy)
# neither set is good prose, on `smol` both are fluent English, and only the text shows *what* changed. The knobs
# against over-optimisation: a larger `beta` (KTO's loss keeps the policy closer to the reference), fewer steps,
# and always judging with something the policy was not trained towards. Notebook 06 turns
# these knobs on a policy trained *against* the reward model (GRPO), measures what each one moves, and adds judges
# the policy never sees.

# %%
from helpers import save_metrics

metrics = {
    "margin_before": margin_before, "margin_after": margin_after, "margin_gain": margin_after - margin_before,
    "implicit_margin_after": implicit_margin, "implicit_margin_by_source": by_source, "held_out_rows": len(test),
    "held_out_desirable": sum(test["label"]), "rm_reward_before": float(rm_before.mean()),
    "rm_reward_after": float(rm_after.mean()), "rm_win_rate": rm_win_rate, "rm_prompts": len(prompts),
    "desirable_weight": desirable_weight, "undesirable_weight": undesirable_weight, "weight_ratio": ratio,
    "n_desirable": n_desirable, "n_undesirable": n_undesirable, "batches_with_both_labels": both_in_loader,
    "train_batches": len(per_batch), "beta": args.beta, "train_loss": train_result.metrics["train_loss"],
    "train_runtime_s": train_result.metrics["train_runtime"], "quantization": profile.quantization,
    "dtype": dtype.name, "seconds": round(time.perf_counter() - start, 1),
    "answers_before": stats_before, "answers_after": stats_after, "reading": reading, "profile": profile.name,
    "answer_examples": [{"prompt": p[-1]["content"], "before": b, "after": a}
                        for p, b, a in list(zip(prompts, before, after))[:2]],
    "kto_log": {k: logged[k] for k in ("step", "rewards/chosen", "rewards/rejected", "rewards/margins", "kl")},
}
save_metrics(run_dir, "05_kto_unpaired", metrics)
{k: metrics[k] for k in ("margin_before", "margin_after", "rm_reward_before", "rm_reward_after", "rm_win_rate")}

# %% [markdown]
# ## Try it
# Level 1: with `undesirable_weight=1.0`, which `desirable_weight` puts λ_D·n_D / (λ_U·n_U) inside the KTO
# paper's band [1, 4/3] for this run's training rows? (`check_kto_setup` stops a run outside it.) The check cell
# says *not attempted yet* while `answer` is `None`; solutions for instructors: `notebooks/solutions.py`.
# Level 2 (explore): set `beta=2 * profile.kto_beta` and compare the held-out margin gain and the KL curve.
# Level 3 (explore): train on `train.sort("label")` (all undesirable rows first): `check_kto_setup` warns and says
# why; train anyway and find the log lines without `rewards/chosen` or `rewards/rejected`.

# %%
from helpers.exercises import check_exercise

answer = None  # Level 1: a weight
check_exercise("05.1", answer, run_dir, profile)

# %% [markdown]
# ## What you have now
# - `RUN_DIR/kto_adapter/`: the policy's LoRA adapter and tokenizer (load with
#   `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(policy_path, use_safetensors=True), adapter_dir)`);
# - `RUN_DIR/figures/05_kto_curves.png`: rewards/chosen, rewards/rejected, margins and KL over training;
#   `05_implicit_rewards.png` (held-out implicit rewards by label) and `05_before_after.png` (the policy's
#   answers before and after: RM reward, length, distinct-2, repeated answers);
# - `RUN_DIR/metrics/05_kto_unpaired.json`: held-out margins before and after, RM rewards before and after, win rate,
#   class weights, the batch check, and the logged rewards and `kl` (`kto_log`).
#
# ## Next
# You have built the loop up to here: data (01), a reward model (02–03), scoring (04), and a policy aligned from
# unpaired feedback, judged by that reward model (05). Notebook 06 optimises a policy directly against the reward
# model (online RL with GRPO) and shows where that goes wrong. Also from here: plug your own 👍/👎 logs into
# notebook 01 (`UNPAIRED_PATH`), or train with DPO on the pairs and compare with KTO.
