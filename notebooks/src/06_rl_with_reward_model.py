# %% [markdown]
# # 06 · RL with your reward model: GRPO, and a policy that over-optimises it
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/reward-lab/reward-lab/blob/main/notebooks/06_rl_with_reward_model.ipynb)
#
# A reward model exists to be optimised against. Here we close the RLHF loop: a chat policy writes answers, the
# reward model of notebook 03 scores them, and TRL's `GRPOTrainer` moves the policy towards what scored well. Then we
# watch for the failure every RLHF practitioner meets: the policy learns what *this* reward model likes, which is
# not the same thing as a better answer. Two judges the policy never sees (a second reward model, and word overlap with
# the human-preferred answers) are where to look for the difference; whether they see it, your run will show.
#
# **You will learn**
# - the loop: sample, score with the reward model, update, stay near the reference (KL);
# - GRPO: several answers per prompt, each judged against its own group (no value network), and TRL's defaults;
# - how `GRPOTrainer` reads a reward from a reward model, why it computes it in its own mixed precision, and a check
#   that it equals `RewardScorer`;
# - over-optimisation: the trained-against reward rises, a held-out judge may not; how to see it;
# - the knobs against it: the KL coefficient β, the number of steps, a length penalty as a second reward.
#
# | profile | hardware | time |
# |---|---|---|
# | `tiny` | any CPU | one to two minutes |
# | `smol` | any CPU, offline (Colab: from the Hub) | about 8 minutes on 2 cores |
# | `llama3-8b` | T4 16 GB (fp16) · L4/A100 (bf16) | not yet measured; computed peak GPU memory on a T4 13.3 GiB (`helpers.resources`) |

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
MAX_STEPS = -1  # -1: the profile's grpo_steps; else this many GRPO steps
BETA = -1.0  # -1: the profile's grpo_beta (the KL coefficient); 0 turns the KL term off
LENGTH_PENALTY = 0.0  # reward per word subtracted from the reward model's, in the main run (0: none)
KNOB_RUNS = [{"beta": 0.4}, {"length_penalty": 0.1}]  # short reruns, each changing one knob; [] to skip them
N_EVAL_PROMPTS = 16  # held-out prompts answered greedily and judged during training
DTYPE = "auto"  # "auto" (from the hardware), or force "fp16" (a T4's policy) or "bf16"

# %%
import time
import numpy as np
import torch
from helpers import check_hardware, get_hf_token, get_profile, prepare_run_dir, set_seed
from helpers.data import require_notebook_inputs
from helpers.env import dtype_policy
from helpers.data_io import read_jsonl
from helpers.rl import check_knob_runs

start = time.perf_counter()
profile = get_profile(PROFILE, **({} if POLICY == "profile" else {"policy_base": POLICY}))
run_dir = prepare_run_dir(RUN_DIR)
policy_path = profile.model_path("policy_base", run_dir)
require_notebook_inputs("06_rl_with_reward_model", run_dir, profile)  # stops, naming the notebook to run first
steps = profile.grpo_steps if MAX_STEPS == -1 else MAX_STEPS
check_knob_runs(KNOB_RUNS)  # before anything loads
beta = profile.grpo_beta if BETA == -1.0 else BETA
hardware, dtype = check_hardware(profile), dtype_policy(DTYPE)
set_seed(SEED)
print(f"profile {profile.name}: policy {profile.policy_base}, {profile.quantization}, {steps} steps, beta {beta}, "
      f"dtype {dtype.name}: {dtype.reason}")

# %% [markdown]
# On a CPU with native bf16 (AVX-512, AMX) the kit computes in bf16 autocast (notebook 00). Many CPUs (AVX2 only)
# have no bf16 arithmetic: torch emulates it, and a 512 × 512 bf16 matmul took 220 ms against 2.5 ms in fp32 on
# such a machine, so there the whole course runs in fp32 (the line above says which). GPUs are unaffected: fp16
# on a T4, bf16 from an A100 on.
#
# ## The loop, and GRPO
# RLHF's last stage repeats four moves: take a batch of prompts, let the policy **sample** answers, **score**
# each answer with the reward model, and **update** the policy to make high-scoring answers likelier, while a
# penalty keeps it **near the reference** (the policy before RL), so it cannot wander into text the reward model
# never saw. PPO, the classic algorithm, also trains a value network to judge each answer against. **GRPO**
# (Group Relative Policy Optimization, Shao et al. 2024) drops it: it samples $G$ answers per prompt and
# judges each against its own group,
#
# $$A_i = \frac{r_i - \operatorname{mean}(r_1..r_G)}{\operatorname{std}(r_1..r_G) + 10^{-4}}$$
#
# so an answer is pushed up only if it beat its siblings. The loss per token is PPO's clipped ratio times $A_i$,
# plus $\beta$ times a KL estimate to the reference, $e^{\log\pi_\text{ref} - \log\pi_\theta} -
# (\log\pi_\text{ref} - \log\pi_\theta) - 1$ (TRL `grpo_trainer.py`, `_compute_loss`). With LoRA the reference
# costs no memory: TRL disables the adapter to compute it, as KTO did in notebook 05.
#
# ## Prompts: train to optimise, test to judge
# The policy practises on the prompts of the training pairs (their answers are not used: the reward model is
# the teacher now). The test prompts are kept for judging, with greedy answers, before and during training.

# %%
from datasets import Dataset
from helpers.rl import held_out_set, unique_prompts

train_prompts = unique_prompts(run_dir / "data" / "train.jsonl")
eval_prompts, references = held_out_set(run_dir / "data" / "test.jsonl", N_EVAL_PROMPTS)  # + the chosen answers
print(f"{len(train_prompts)} training prompts, {len(eval_prompts)} held-out prompts; first: "
      f"{train_prompts[0][-1]['content']!r}")

# %% [markdown]
# ## The policy, in 8-bit with LoRA
# The same chat policy as notebook 05, loaded the same way: int8 linear layers (`Linear8bitLt`, which also runs on
# CPU), `prepare_model_for_kbit_training` (int8 base frozen, the other weights in fp32), and a `CAUSAL_LM` LoRA
# config that `GRPOTrainer` applies.

# %%
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

tokenizer = AutoTokenizer.from_pretrained(policy_path, token=get_hf_token())
bnb_config = BitsAndBytesConfig(load_in_8bit=True) if profile.quantization == "8bit" else None
policy = AutoModelForCausalLM.from_pretrained(
    policy_path, quantization_config=bnb_config, dtype=dtype.dtype,
    device_map={"": 0} if hardware["device"] == "cuda" else None, token=get_hf_token(), use_safetensors=True)
if bnb_config is not None:
    policy = prepare_model_for_kbit_training(policy, use_gradient_checkpointing=profile.gradient_checkpointing)
lora_config = LoraConfig(r=profile.lora_r, lora_alpha=profile.lora_alpha, lora_dropout=profile.lora_dropout,
                         target_modules=list(profile.lora_target_modules), task_type="CAUSAL_LM")
print(type(policy).__name__, f"| memory {policy.get_memory_footprint() / 2**20:.1f} MiB")

# %% [markdown]
# TRL 1.16's `GRPOConfig` has no prompt length limit, so a long prompt costs memory the resource model did not
# plan for. Prompts longer than the profile's `grpo_max_prompt_length` (templated, in policy tokens) are left out,
# and counted:

# %%
lengths = [len(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False))
           for p in train_prompts]
fit = [n <= profile.grpo_max_prompt_length for n in lengths]
train_dataset = Dataset.from_list([{"prompt": p} for p, ok in zip(train_prompts, fit) if ok])
print(f"{sum(fit)} of {len(train_prompts)} prompts kept, {fit.count(False)} longer than "
      f"{profile.grpo_max_prompt_length} tokens left out; longest kept {max(n for n, ok in zip(lengths, fit) if ok)}")

# %% [markdown]
# ## The reward: notebook 03's merged reward model
# `GRPOTrainer` takes a reward model as `reward_funcs`: a folder name (it then loads
# `AutoModelForSequenceClassification` itself, in the dtype the folder was saved in and never quantized) or a loaded
# model. We load it once with
# `RewardScorer` (in 8-bit on a GPU smaller than 38 GB, as in notebooks 04 and 05) and hand its model and
# tokenizer to the trainer, so one copy serves both. One copy must also mean one way of computing: the trainer will
# run this model in its mixed precision (bf16 or fp16 autocast, explained at the check below), so the scorer is
# built to compute in that precision from the first score on (`autocast=`; `None` when the trainer uses fp32).

# %%
from helpers.merge_shards import ensure_merged_model
from helpers.score import RewardScorer, grpo_autocast

score_quantization = None if profile.is_local or hardware["gpu_memory_gib"] >= 38 else "8bit"
merged_dir = ensure_merged_model(run_dir, profile, token=get_hf_token())  # Colab: rebuilt on this runtime's disk
autocast = grpo_autocast(dtype.bf16, dtype.fp16, hardware["device"])  # the precision GRPOTrainer will score in
scorer = RewardScorer.from_pretrained(merged_dir, quantization=score_quantization, autocast=autocast)
rm, rm_tokenizer = scorer.model, scorer.tokenizer
print(type(rm).__name__, f"| pad {rm_tokenizer.pad_token!r} | eos {rm_tokenizer.eos_token!r} | autocast {autocast}")

# %% [markdown]
# ## How GRPO reads a reward
# For conversational prompts, TRL (`grpo_trainer.py`, `_calculate_rewards`) renders prompt + answer with the
# **reward model's** chat template as text, tokenises it *without* adding special tokens (the template already
# wrote `<|begin_of_text|>`), pads on the **right**, and takes `logits[:, 0]`: the sequence-classification model
# reads its score at the last non-pad token, which needs a pad token different from EOS (notebook 02). The
# policy's own tokenizer never meets the reward model: the answer travels as text. By hand, on two held-out
# prompts and two answers (in the scorer's autocast, so the two lines can agree):

# %%
from helpers.score import _messages

pairs = [(eval_prompts[0], "Boil it for nine minutes, then cool it in cold water."),
         (eval_prompts[1], "I am not sure.")]
texts = [rm_tokenizer.apply_chat_template(p + _messages(a, "assistant"), tokenize=False) for p, a in pairs]
batch = rm_tokenizer(texts, padding=True, padding_side="right", add_special_tokens=False, return_tensors="pt")
with torch.no_grad(), torch.autocast(rm.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
    by_hand = rm(**batch.to(rm.device)).logits[:, 0].float().cpu().numpy()
print("rewards read as GRPO reads them:", by_hand.round(4), "| RewardScorer:", scorer.score_batch(pairs).round(4))

# %% [markdown]
# ## A judge the policy never sees
# If we judge the trained policy with the same reward model it was trained against, we only learn that
# optimisation works. Gao et al. (2023, *Scaling Laws for Reward Model Overoptimization*) judge with a second
# model instead. Ours is a second reward model trained on **other pairs**: the test pairs, which the reward model
# of notebook 02 never saw. It is a Bradley–Terry linear head on the hidden states of the policy's **reference**
# (the frozen base, LoRA switched off: `helpers.rl.reference_states`), fitted in seconds. We check it on training
# pairs it never saw: better than a coin flip is all a judge needs to be, as long as it is independent.

# %%
from helpers.rl import train_judge

test_pairs, train_pairs = read_jsonl(run_dir / "data" / "test.jsonl"), read_jsonl(run_dir / "data" / "train.jsonl")
judge = train_judge(policy, tokenizer, test_pairs)
judge_accuracy = judge.accuracy(train_pairs[:64])
print(f"judge: trained on {judge.trained_on} test pairs; accuracy on 64 training pairs it never saw "
      f"{judge_accuracy:.3f} (chance 0.5)")

# %% [markdown]
# A second judge needs no model at all: **overlap**, the word F1 between an answer and the human-preferred
# (chosen) answer of the same held-out pair (`helpers.rl.word_f1`). It knows nothing about quality beyond shared
# words, but nothing the policy learns from the reward model can fool it either.
#
# ## Before training
# Greedy answers to the held-out prompts, scored by the reward model and both judges (each on its own scale:
# compare a judge only with itself).

# %%
from helpers.rl import evaluate_answers

max_new = profile.grpo_max_completion_length
before = evaluate_answers(policy, tokenizer, eval_prompts, references, scorer, judge, max_new)
print(f"RM {np.mean(before['rm']):.3f} | second RM {np.mean(before['judge']):.3f} | overlap "
      f"{np.mean(before['overlap']):.3f} | {before['words']:.1f} words | distinct-2 {before['distinct_2']:.3f}")
print("first answer:", repr(before["answers"][0][:120]))

# %% [markdown]
# ## GRPOConfig
# The TRL defaults we override, and why: `beta` 0.0 → the profile's (TRL's default loads no reference and
# applies no KL penalty at all, `grpo_config.py`; we want the leash and its curve); `learning_rate` 1e-6 → the
# profile's (LoRA needs more); `num_generations` 8 → the profile's $G$; `max_completion_length` 512 → the profile's;
# `disable_dropout` False → True (sampling and scoring should see the same network); `bf16`/`fp16` → the dtype
# policy. Kept: `loss_type="dapo"` (token losses averaged over all tokens of the batch, no length bias),
# `scale_rewards="group"` (the $A_i$ above), `temperature=1.0`. `per_device_train_batch_size` counts
# **completions**: `grpo_batch_size / num_generations` prompts per step; `steps_per_generation` samples for
# that many steps at once (the later steps are slightly off-policy, which the clipped ratio corrects for).
# `gradient_checkpointing_kwargs={"use_reentrant": True}`, as in notebooks 02 and 05: without it transformers 5.23
# checkpoints non-reentrantly (`modeling_utils.py:3149`), which on the 8B shape of notebook 02's training step peaked
# at 31.2 GiB of GPU memory against 12.8 GiB reentrant (measured on an H200). `tiny` does not checkpoint.

# %%
from trl import GRPOConfig

def grpo_config(beta, steps, output="checkpoints"):
    return GRPOConfig(
        output_dir=str(run_dir / "rl_adapter" / output), seed=SEED, beta=beta, learning_rate=profile.grpo_learning_rate,
        max_steps=steps, num_generations=profile.grpo_num_generations,
        per_device_train_batch_size=profile.grpo_batch_size, steps_per_generation=profile.grpo_steps_per_generation,
        max_completion_length=profile.grpo_max_completion_length, disable_dropout=True,
        gradient_checkpointing=profile.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": True},
        bf16=dtype.bf16, fp16=dtype.fp16, use_cpu=hardware["device"] == "cpu", logging_steps=1, save_strategy="no",
        report_to="none")

args = grpo_config(beta, steps)
print(f"beta {args.beta}, lr {args.learning_rate}, G {args.num_generations}, {args.per_device_train_batch_size} "
      f"completions/step, {args.max_completion_length} tokens, loss {args.loss_type}, scale {args.scale_rewards}")

# %% [markdown]
# ## GRPOTrainer
# `reward_funcs` lists the rewards, summed with `reward_weights` (default 1 each): the reward model, plus a length
# penalty when `LENGTH_PENALTY` > 0 (`helpers.rl.length_penalty`: minus that much per word, a plain Python
# function with TRL's reward-function signature). A callback answers the held-out prompts every
# `grpo_eval_every` steps. As in notebooks 02 and 05, TRL stores the LoRA weights of a quantized model in bf16;
# `keep_trainable_fp32` puts them back in fp32.

# %%
from trl import GRPOTrainer
from helpers.rl import length_penalty, make_eval_callback
from helpers.train import keep_trainable_fp32

def grpo_trainer(config, per_word=0.0, callbacks=()):
    rewards = [rm] + ([length_penalty(per_word)] if per_word else [])
    trainer = GRPOTrainer(model=policy, args=config, train_dataset=train_dataset, processing_class=tokenizer,
                          reward_funcs=rewards, reward_processing_classes=[rm_tokenizer] + [None] * (len(rewards) - 1),
                          peft_config=lora_config, callbacks=list(callbacks))
    keep_trainable_fp32(trainer.model)
    return trainer

held_out = make_eval_callback(tokenizer, eval_prompts, references, scorer, judge, max_new, profile.grpo_eval_every,
                              before, also_at=(steps // 2,))  # the knob runs below compare at half the steps
trainer = grpo_trainer(args, LENGTH_PENALTY, [held_out])
trainer.model.print_trainable_parameters()

# %% [markdown]
# ## The check, and the precision GRPO scores in
# `GRPOTrainer` passes every reward model through `accelerator.prepare_model` (TRL 1.16 `grpo_trainer.py:1214`).
# With `bf16=True` (any device) or `fp16=True` (GPUs only; accelerate 1.15 `accelerator.py:564-593`), that call
# **replaces the model's `forward`** with one run inside `torch.autocast` and keeps the old one as
# `_original_forward` (`accelerator.py:1824-1835`). The wrapper sits on the model object itself, so from then on
# every caller of `rm` computes in that precision, `RewardScorer` included (`rm` is `scorer.model`). Had the scorer
# computed in fp32 until now, the step-0 scores would be fp32 and every later one bf16: on `tiny` up to 0.04 apart
# (measured on seed 7 when this notebook still did that), enough to blur a small effect and to fail the check. That is why the scorer was
# built with `autocast=grpo_autocast(...)`: every reward in this notebook, before, during and after training, is
# the same computation as the one GRPO optimises.
#
# The check: TRL's own reward computation, `trainer._calculate_rewards`, on the held-out prompts and the greedy
# answers from before, against `RewardScorer`'s scores of them. Same model, same precision, same token ids (the
# reward model's template, no added special tokens), same last non-pad token: on a CPU they agree to the bit.
# `compare_rewards` stops the notebook if they differ by more than 1e-4 in fp32 (a GPU's kernels on batches of
# other shapes), or in bf16/fp16 by more than about half a unit in the last place of the largest reward.

# %%
# NBVAL_CHECK_OUTPUT
from helpers.score import compare_rewards

completions = [_messages(a, "assistant") for a in before["answers"]]
inputs = [{"prompt": p} for p in eval_prompts]
grpo_rewards = trainer._calculate_rewards(inputs, eval_prompts, completions, [[0]] * len(eval_prompts))[:, 0]
print("forward wrapped by accelerate:", hasattr(rm, "_original_forward"), "| autocast:", autocast)
grpo_vs_scorer = compare_rewards(grpo_rewards, before["rm"], autocast)  # raises when they do not agree
print(f"every held-out answer: max |GRPO reward - RewardScorer| = {grpo_vs_scorer:.3g}, within the tolerance")

# %% [markdown]
# ## Train
# Each log line is one step: `kl` is the KL estimate to the reference in nats per token. `reward` (the mean over
# the sampled completions, RM plus any penalty) and `completions/mean_length` (their length in tokens) are logged
# on the steps that sample, every `steps_per_generation` steps.

# %%
train_result = trainer.train()
{k: round(v, 4) for k, v in train_result.metrics.items() if isinstance(v, float)}

# %%
from helpers.plots import save_figure
from helpers.rl import plot_grpo_curves

fig = plot_grpo_curves(trainer.state.log_history)
save_figure(fig, run_dir, "06_grpo_curves")
fig

# %% [markdown]
# ## Over-optimisation: the reward model against the judges
# The held-out answers, every `grpo_eval_every` steps: the reward model the policy trains against and the two
# judges, each as its change since step 0 in units of its own step-0 spread across prompts.

# %%
from helpers.rl import kl_over_steps, moved, plot_overoptimisation, read_overoptimisation

evaluations = held_out.evaluations
kl_by_step = {s: kl_over_steps(trainer.state.log_history, last=1, upto=s) if s else 0.0 for s in evaluations}
for s, e in evaluations.items():
    print(f"step {s:3}: RM {np.mean(e['rm']):6.3f} | second RM {np.mean(e['judge']):6.3f} | overlap "
          f"{np.mean(e['overlap']):.3f} | {e['words']:4.1f} words | distinct-2 {e['distinct_2']:.3f} | KL {kl_by_step[s]:.3f}")
first, last = evaluations[0], evaluations[max(evaluations)]
changes = {}
for key, name in (("rm", "reward model (trained against)"), ("judge", "second reward model"), ("overlap", "overlap")):
    changes[key] = (np.mean(last[key]) - np.mean(first[key])) / (np.std(first[key]) or 1.0)  # as the plot draws it
    print(f"{name}: {moved(changes[key])} ({changes[key]:+.2f} step-0 spreads from step 0 to step "
          f"{max(evaluations)}; within ±0.1: stayed)")
print(read_overoptimisation(changes))
fig = plot_overoptimisation(evaluations, kl_by_step)
save_figure(fig, run_dir, "06_overoptimisation")
fig

# %%
after = evaluations[max(evaluations)]
for prompt, b, a in list(zip(eval_prompts, before["answers"], after["answers"]))[:3]:
    print(f"PROMPT {prompt[-1]['content']!r}\n  before: {b[:110]!r}\n  after:  {a[:110]!r}")

# %% [markdown]
# Read the plot and the answers together. The reward model's line is what GRPO maximises; when it rises while a
# judge stays flat or falls, the policy is learning something the reward model rewards and the judge does not:
# the reward model's blind spots (a phrase, a format, a length), not better answers. That is
# **over-optimisation** (Gao et al. 2023 measure it against KL: the trained-against reward keeps rising with
# KL, the gold one peaks and falls).
#
# Your run's three lines and their reading are printed above the plot; read them with the answers. Look for what the
# answers turned into (on `tiny`: chat-role words such as `user` and `assistant`, or one word repeated; on `smol`,
# fluent English whose changes are in a phrase, a hedge, a length: compare before and after line by line) and for the overlap with
# the human answers falling while the reward model's line climbs. On a short `tiny` run that line can also fall:
# GRPO raises the reward of *sampled* answers, and these are greedy ones. The second reward model can go either way
# from one seed to the next: when it **rises too**, it shares the blind spot, because it reads the same kind of
# surface features as the first, learned from the same kind of data. A learned judge is only as independent as its
# training; that is why this notebook also keeps a judge with no model, diversity (distinct-2), and the answers
# themselves in view.
#
# Save the adapter (the policy is `policy_base` + this adapter):

# %%
adapter_dir = run_dir / "rl_adapter"
trainer.save_model(str(adapter_dir))
kl_final = kl_over_steps(trainer.state.log_history)
print(sorted(p.name for p in adapter_dir.iterdir() if p.is_file()), f"| final KL {kl_final:.3f}")

# %% [markdown]
# ## The knobs
# Three things keep a policy from running away with a reward model, and each is one argument:
# - **β**, the KL coefficient: a larger β charges more for every nat of drift from the reference;
# - **steps**: over-optimisation grows with optimisation; the curve above *is* the steps knob, read left to right;
# - **a length penalty**: a second reward function; `reward_weights` sets its weight.
#
# Each run in `KNOB_RUNS` retrains from the same start for half the main run's steps and changes one knob;
# it is compared with the main run at the same step (the held-out callback measured it there).

# %%
from helpers.rl import knob_effects, plot_knobs

main_log, knob_steps, runs = trainer.state.log_history, steps // 2, []
for knob in KNOB_RUNS:
    trainer.model.unload()  # back to the plain 8-bit base: the next trainer adds a fresh adapter
    set_seed(SEED)
    trainer = grpo_trainer(grpo_config(knob.get("beta", beta), knob_steps, "knob"), knob.get("length_penalty", 0.0))
    trainer.train()
    runs.append({"knob": knob, "kl": kl_over_steps(trainer.state.log_history),
                 **evaluate_answers(trainer.model, tokenizer, eval_prompts, references, scorer, judge, max_new)})
baseline = {"knob": {}, "kl": kl_over_steps(main_log, upto=knob_steps), **evaluations[knob_steps]}
effects = knob_effects(baseline, runs)
for row in effects:
    print(row["line"])

# %%
fig = plot_knobs(effects)
save_figure(fig, run_dir, "06_knobs")
fig

# %% [markdown]
# A larger β should end nearer the reference (lower KL), and a length penalty should shorten the answers; the
# lines above say whether they did on this run, what each cost in reward-model score, and what it did to the
# judges. Look at Δoverlap and Δjudge beside ΔRM: a leash that works gives up some of the reward model's gain
# (ΔRM below 0) and keeps the judges nearer where they started, by refusing the reward model's favourite answers.
# A length penalty fixes one blind spot (length); if the overlap does not come back with it, length was not the
# blind spot this reward model has. A knob is right when the *judges* say so, not the reward it is trained against.

# %%
from helpers import save_metrics

metrics = {
    "rm_reward_before": float(np.mean(before["rm"])), "rm_reward_after": float(np.mean(after["rm"])),
    "heldout_judge_before": float(np.mean(before["judge"])), "heldout_judge_after": float(np.mean(after["judge"])),
    "overlap_before": float(np.mean(before["overlap"])), "overlap_after": float(np.mean(after["overlap"])),
    "kl_final": kl_final, "grpo_vs_scorer_max_abs_diff": grpo_vs_scorer, "judge_accuracy_unseen": judge_accuracy,
    "judge_pairs": judge.trained_on, "rm_before_per_prompt": before["rm"], "eval_prompts": len(eval_prompts),
    "words_before": before["words"], "words_after": after["words"], "distinct_2_before": before["distinct_2"],
    "distinct_2_after": after["distinct_2"], "steps": steps, "beta": beta, "length_penalty": LENGTH_PENALTY,
    "by_step": {s: {"rm": float(np.mean(e["rm"])), "judge": float(np.mean(e["judge"])),
                    "overlap": float(np.mean(e["overlap"])), "words": e["words"], "distinct_2": e["distinct_2"],
                    "kl": kl_by_step[s]} for s, e in evaluations.items()},
    "reading": read_overoptimisation(changes), "knob_steps": knob_steps, "knobs": [{k: v for k, v in row.items() if k != "line"} for row in effects],
    "train_runtime_s": train_result.metrics["train_runtime"], "quantization": profile.quantization,
    "dtype": dtype.name, "seconds": round(time.perf_counter() - start, 1), "profile": profile.name,
    "answer_examples": [{"prompt": p[-1]["content"], "before": b, "after": a}
                        for p, b, a in list(zip(eval_prompts, before["answers"], after["answers"]))[:2]],
}
save_metrics(run_dir, "06_rl_with_reward_model", metrics)
{k: round(metrics[k], 4) for k in ("rm_reward_before", "rm_reward_after", "heldout_judge_before",
                                    "heldout_judge_after", "overlap_before", "overlap_after", "kl_final",
                                    "grpo_vs_scorer_max_abs_diff")}

# %% [markdown]
# ## Try it
# Level 1: GRPO's advantage by hand. Treat the reward model's scores of the first four held-out answers before
# training (`before["rm"][:4]`) as one group of $G = 4$. Which advantage $A_1$ does TRL give the first answer?
# Level 2: from the knob lines above, by how many words did the length-penalty run change the held-out answers
# against the main run at the same step (penalised minus main; negative if shorter)?
# The check cells say *not attempted yet* while `answer` is `None`; solutions for instructors:
# `notebooks/solutions.py`.
# Level 3 (explore): set `BETA = 0.01` (a looser leash) and rerun: how do the KL curve and the judges' lines change?
# (`BETA = 0.0` removes the leash entirely; TRL then computes no KL at all, and the KL values here read `nan`.)
# Then `LENGTH_PENALTY = 0.1` for the whole run, or raise `MAX_STEPS` to see where the two lines part.

# %%
from helpers.exercises import check_exercise

answer = None  # Level 1: a number
check_exercise("06.1", answer, run_dir, profile)

# %%
from helpers.exercises import check_exercise

answer = None  # Level 2: a number of words
check_exercise("06.2", answer, run_dir, profile)

# %% [markdown]
# ## What you have now
# - `RUN_DIR/rl_adapter/`: the GRPO-trained policy's LoRA adapter and tokenizer (load it on `policy_base` with
#   `PeftModel.from_pretrained`, as notebook 05's);
# - `RUN_DIR/figures/06_grpo_curves.png` (reward, KL and completion length per step), `06_overoptimisation.png`
#   (held-out answers: the reward model against the judge over training) and `06_knobs.png` (what each knob
#   changed);
# - `RUN_DIR/metrics/06_rl_with_reward_model.json`: RM reward and judge before and after, final KL, the GRPO vs
#   `RewardScorer` check, the per-step evaluations and the knob runs.
#
# ## Next
# You have closed the loop: data (01), a reward model (02–03), scoring (04), a policy from unpaired feedback (05),
# and a policy optimised online against your reward model, with a judge watching (06). From here: the
# `llama3-8b` profile on a GPU, `RLOOTrainer` (the same reward model, another baseline), or a reward model trained
# on more data and judged again: does the gap between the two lines shrink?
