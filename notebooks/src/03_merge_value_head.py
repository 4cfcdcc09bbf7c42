# %% [markdown]
# # 03 · Merge the value head: one full-precision reward model, exported and verified
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/reward-lab/reward-lab/blob/main/notebooks/03_merge_value_head.ipynb)
#
# Notebook 02 left a LoRA adapter: small matrices for the 8-bit base, plus the trained `score` head. Serving,
# PPO and other people's code want **one ordinary model folder** instead. Here we fold the adapter into the
# base weights, save a plain `AutoModelForSequenceClassification`, write the layouts LLaMA-Factory and
# OpenRLHF read, and prove that every copy gives the rewards the trained model gives.
#
# **You will learn**
# - why the merge reloads the base in full precision (bf16/fp16 on a GPU, fp32 on a CPU) instead of 8-bit;
# - `PeftModel.from_pretrained` → `merge_and_unload()` → `save_pretrained`, and how to check the merge is exact;
# - how much 8-bit quantisation moved the rewards the model was trained with;
# - the LLaMA-Factory layout (`value_head.safetensors`, a `...ForCausalLM` config) and OpenRLHF's config keys;
# - how to verify a saved reward model, and how a merge loses its head (the much-asked "newly initialized" warning).
#
# | profile | hardware | time |
# |---|---|---|
# | `tiny` | any CPU | 1–2 minutes |
# | `smol` | any CPU, offline | about 6 minutes on 2 CPU cores |
# | `llama3-8b` | T4 16 GB: the merge runs shard by shard on the CPU, the checks split the model between GPU and CPU | computed: peak GPU 13.2 GiB, RAM 11.3 GB, local disk 48 GB; Drive gets only small files |

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
MERGE_DTYPE = "auto"  # "auto": fp32 on CPU, bf16 (fp16 on a T4) on GPU; or "float32", "bfloat16", "float16"
N_PROBES = 8  # held-out conversations the verifier scores

# %%
import torch
from helpers import check_hardware, get_hf_token, get_profile, prepare_run_dir, set_seed
from helpers.data import require_notebook_inputs
from helpers.merge import merge_dtype
from helpers.merge_shards import merged_model_dir

profile = get_profile(PROFILE)
run_dir = prepare_run_dir(RUN_DIR)
rm_path, adapter_dir, merged_dir = profile.model_path("rm_base", run_dir), run_dir / "rm_adapter", merged_model_dir(run_dir)
require_notebook_inputs("03_merge_value_head", run_dir, profile)  # stops, naming the notebook to run first
hardware = check_hardware(profile)
set_seed(SEED)
dtype = merge_dtype(hardware["device"]) if MERGE_DTYPE == "auto" else getattr(torch, MERGE_DTYPE)
print(f"profile {profile.name}: merge {rm_path} + {adapter_dir.name} in {dtype} on {hardware['device']}")
print(f"the merged model goes to {merged_dir}")

# %% [markdown]
# ## What notebook 02 left
# The adapter folder holds the LoRA matrices **and** the trained `score` head (that is what `task_type="SEQ_CLS"`
# bought us), and the tokenizer with its chat template and dedicated pad token. We reuse that tokenizer
# everywhere: a reward is only meaningful for the exact token sequence it was trained on.

# %%
import json
from datasets import load_dataset
from transformers import AutoTokenizer
from helpers.data import heldout_subset
from helpers.merge import adapter_head

tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
saved_head = adapter_head(adapter_dir)
test = load_dataset("json", data_files=str(run_dir / "data" / "test.jsonl"), split="train")
test = heldout_subset(test, profile.heldout_limit, seed=SEED, what="held-out pairs")  # all, unless capped (smol)
probes = [row["prompt"] + row["chosen"] for row in test.select(range(min(N_PROBES, len(test))))]
trained = json.loads((run_dir / "metrics" / "02_train_reward_model.json").read_text())
print(sorted(p.name for p in adapter_dir.iterdir()))
print(f"score head in the adapter: {list(saved_head.shape)} {saved_head.dtype}; pad {tokenizer.pad_token!r}; "
      f"{len(test)} held-out pairs")

# %% [markdown]
# ## The reference: the model exactly as it was trained
# First we rebuild what notebook 02 trained and scored, step by step as 02 did it: the base in 8-bit (the same
# `BitsAndBytesConfig`), `prepare_model_for_kbit_training`, the adapter (`PeftModel.from_pretrained`, which brings
# the trained `score` head with it), the adapter's weights in fp32 as 02 kept them, and the forward pass under the
# autocast the trainer used. Its held-out accuracy must be notebook 02's. Every later copy is compared with these
# scores.

# %%
from peft import PeftModel, prepare_model_for_kbit_training
from transformers import AutoModelForSequenceClassification
from helpers.env import quiet_transformers, require_safetensors
from helpers.merge import adapter_weights_fp32, quantization_config, with_training_autocast
from helpers.score import pairwise_accuracy, score_pairs

train_dtype = getattr(torch, trained["dtype"])
with quiet_transformers():  # the same load report as in 02 (no head yet): the adapter brings it
    base_as_trained = AutoModelForSequenceClassification.from_pretrained(
        rm_path, num_labels=1, quantization_config=quantization_config(trained["quantization"], train_dtype),
        dtype=train_dtype, device_map={"": 0} if hardware["device"] == "cuda" else None, token=get_hf_token(),
        use_safetensors=True)
base_as_trained.config.pad_token_id = tokenizer.pad_token_id
if trained["quantization"]:
    base_as_trained = prepare_model_for_kbit_training(base_as_trained, use_gradient_checkpointing=False)
require_safetensors(adapter_dir, "adapter")  # PEFT would fall back to a pickled adapter_model.bin by itself
model_as_trained = PeftModel.from_pretrained(base_as_trained, str(adapter_dir))
if trained["quantization"]:
    adapter_weights_fp32(model_as_trained)
model_as_trained = with_training_autocast(model_as_trained, train_dtype).eval()
scores_8bit = score_pairs(model_as_trained, tokenizer, test, batch_size=profile.eval_batch_size)
accuracy_8bit = pairwise_accuracy(scores_8bit["chosen"], scores_8bit["rejected"])
print(f"as trained ({trained['quantization']}): held-out accuracy {accuracy_8bit:.3f} "
      f"(notebook 02 reported {trained['eval_accuracy']:.3f})")
assert abs(accuracy_8bit - trained["eval_accuracy"]) <= 1 / len(test) + 1e-9, "this is not the model 02 trained"

# %% [markdown]
# ## Why not merge into these 8-bit weights?
# Merging computes `W + (alpha / r) · B·A` for every adapted layer. In this model `W` is int8: PEFT would
# de-quantise it, add the update, and **round the result back to int8**. The LoRA update is small, often
# smaller than one int8 step, so the rounding erases part of what training learned (older PEFT versions refuse
# outright). And the result would be a bitsandbytes int8 checkpoint, which PPO trainers, vLLM and
# LLaMA-Factory cannot load as a normal model. So we free it and reload the base in full precision.

# %%
import gc

del model_as_trained
gc.collect()
if torch.cuda.is_available():
    torch.cuda.empty_cache()
print(f"merging in {dtype}: fp32 on a CPU; on a GPU bf16 (compute capability >= 8.0) or fp16 (a T4)")

# %% [markdown]
# ## Reload the base in full precision
# Same class and `num_labels=1` as in training, no `quantization_config`. The load report says `score.weight`
# is MISSING — expected, exactly as in notebook 02: the base is a language model. The trained head arrives
# with the adapter two steps below. On a GPU, `device_map="auto"` keeps on the GPU what fits and puts the
# rest in CPU memory: an 8B model in 16 bit (16 GB) is more than a T4's 15 GiB.

# %%
from transformers import AutoModelForSequenceClassification

device_map = "auto" if hardware["device"] == "cuda" else None
# keep ~3 GiB of the GPU free for activations: on a T4, 11.5 GiB of weights (computed in helpers.resources)
gpu_load = {"device_map": "auto", "max_memory": {0: f"{hardware['gpu_memory_gib'] - 3.2:.1f}GiB", "cpu": "48GiB"}} \
    if device_map else {}
base = AutoModelForSequenceClassification.from_pretrained(
    rm_path, num_labels=1, dtype=dtype, token=get_hf_token(), use_safetensors=True, **gpu_load,
)
base.config.pad_token_id = tokenizer.pad_token_id  # the reward is read at the last non-pad token
print(type(base).__name__, base.dtype, "| score head:", base.score)

# %% [markdown]
# Before the adapter changes it, we keep what this *untrained* body makes of the held-out answers: the hidden state
# at each answer's last token, the vector a `score` head reads. The pitfall section at the end compares it with the
# trained body's.

# %%
from helpers.diagnose import last_token_states

h_untrained = {side: last_token_states(base, tokenizer, [r["prompt"] + r[side] for r in test])
               for side in ("chosen", "rejected")}
print({side: h.shape for side, h in h_untrained.items()})

# %% [markdown]
# ## Attach the adapter
# `PeftModel.from_pretrained` wraps every targeted linear layer with its LoRA matrices and replaces the random
# `score` with the trained copy saved beside them (PEFT's `modules_to_save`). The head the model now uses is
# the adapter's, value for value. Its scores are the reference every merged copy must reproduce.

# %%
adapted = PeftModel.from_pretrained(base, str(adapter_dir))  # the adapter checked above: safetensors
head_now = adapted.base_model.model.score.modules_to_save["default"].weight
print(type(adapted).__name__, "| head from the adapter:",
      torch.equal(head_now.detach().float().cpu(), saved_head.float()))
scores_adapter = score_pairs(adapted, tokenizer, test, batch_size=profile.eval_batch_size)

# %% [markdown]
# ## Merge in memory: `merge_and_unload()`
# `merge_and_unload()` adds each `(alpha / r) · B·A` into its base weight, removes the LoRA wrappers and returns
# the plain transformers model underneath, with the trained head in place. It needs the whole full-precision
# model in one place: fine for the CPU profiles' small models (`tiny`, `smol`), or for an 8B model on an A100, but
# not on a T4 or in a free Colab's
# 12.7 GB of RAM, where `device_map="auto"` had to split the model between GPU and CPU. There we skip it.

# %%
placement = set(getattr(base, "hf_device_map", {"": str(base.device)}).values())
in_memory = adapted.merge_and_unload() if len(placement) == 1 else None
if in_memory is not None:
    lora_left = sum("lora" in name for name, _ in in_memory.named_parameters())
    print(f"{type(in_memory).__name__}: {lora_left} LoRA parameters left")
else:
    print(f"skipped: the model is spread over {sorted(map(str, placement))}; the shard merge below does the same sums")

# %% [markdown]
# ## Merge shard by shard: what fits a T4
# The merge is the same sum for every weight, so it does not need the whole model at once. `merge_adapter_by_shard`
# reads the base checkpoint one safetensors shard at a time (≤ 5 GB for LLaMA 3 8B), adds `(alpha / r) · B·A` in
# fp32, stores the result in the merge dtype, and writes the trained head into a small shard of its own. It runs
# on the CPU in about one shard of memory, so the same code merges the small CPU-profile models (`tiny`, `smol`) and
# the 8B model on a free T4.

# %%
from helpers.merge_shards import merge_adapter_by_shard

merge_adapter_by_shard(rm_path, adapter_dir, merged_dir, dtype, tokenizer.pad_token_id, token=get_hf_token())
shards = sorted(p.name for p in merged_dir.glob("*.safetensors"))
print(f"{len(shards)} shard(s): {shards}; {sum(p.stat().st_size for p in merged_dir.glob('*.safetensors')) / 2**20:.1f} MiB")

# %% [markdown]
# Where both merges ran, they must agree weight for weight: in fp32 up to the rounding order of a few sums; in
# 16 bit by at most a rounding step of that dtype (the two merges round at different points):

# %%
from safetensors.torch import load_file

if in_memory is not None:
    streamed = {k: v for p in merged_dir.glob("*.safetensors") for k, v in load_file(p).items()}
    memory_state = in_memory.state_dict()
    weight_diff = max((streamed[k].float() - memory_state[k].detach().float().cpu()).abs().max().item() for k in streamed)
    print(f"{len(streamed)} tensors; max |shard merge - merge_and_unload| = {weight_diff:.2e}")
    del streamed, memory_state
else:
    weight_diff = None
del in_memory, adapted, base
gc.collect()

# %% [markdown]
# Now load the merged folder like anyone else would, and score the held-out pairs. In fp32 the merged model must
# score like base + adapter up to rounding: folding LoRA's $BA$ into $W$ changes the order of the sums, and the
# rewards differ by a few millionths (2e-6 to 7e-6 in the kit's `tiny` runs: this run's is printed below). In 16
# bit every merged weight is rounded once more, so the allowed difference is relative to the size of the rewards:
# `TOLERANCE` × max |reward|, with 2e-2 for bf16 (8 significant bits) and 4e-3 for fp16 (11 bits).

# %%
from helpers.merge import allowed_diff, compare_scores

merged = AutoModelForSequenceClassification.from_pretrained(merged_dir, dtype=dtype, use_safetensors=True, **gpu_load)
scores_merged = score_pairs(merged, tokenizer, test, batch_size=profile.eval_batch_size)
merge_diff, allowed = compare_scores(scores_adapter, scores_merged)["max_abs_diff"], allowed_diff(scores_adapter, dtype)
print(f"max |merged - (base + adapter)| = {merge_diff:.2e} (allowed {allowed:.2e} in {dtype})")
assert merge_diff <= allowed, "the merge changed the rewards"

# %% [markdown]
# ## How far did quantisation move the rewards?
# The adapter was *trained* on top of int8 weights, but the merged model adds it to the original full-precision
# weights. That is a small change of model, so the rewards drift a little. What matters is whether the
# *ranking* survives: on how many held-out pairs do both models prefer the same answer (agreement), and how
# well do their rewards rank all answers alike (Spearman)? What to look for: agreement and Spearman close to 1, and
# flipped pairs, if any, among those the model was unsure about anyway: compare their |margin| (printed) with the
# median |margin|. There is no fixed threshold; a flip at a wide margin would be the warning sign.

# %%
import numpy as np

drift = compare_scores(scores_8bit, scores_merged)
accuracy_merged = pairwise_accuracy(scores_merged["chosen"], scores_merged["rejected"])
flips = (scores_8bit["chosen"] > scores_8bit["rejected"]) != (scores_merged["chosen"] > scores_merged["rejected"])
flipped = int(flips.sum())
margins = np.abs(scores_8bit["chosen"] - scores_8bit["rejected"])
print(f"agreement {drift['agreement']:.3f} ({flipped} of {len(test)} pairs flip), Spearman {drift['spearman']:.4f}, "
      f"max |diff| {drift['max_abs_diff']:.3f}")
print(f"held-out accuracy: as trained {accuracy_8bit:.3f}, merged {accuracy_merged:.3f}; "
      f"median |margin| {np.median(margins):.2f}, |margin| of the flipped pairs {np.round(np.sort(margins[flips]), 2)}")

# %% [markdown]
# ## Normalisation, and OpenRLHF's config keys
# A raw reward has an arbitrary offset and scale. PPO is steadier with rewards near N(0, 1), so we fit
# `mean` and `std` on the held-out rewards (chosen and rejected answers alike) and store them where OpenRLHF
# reads them: `mean` / `std` in `config.json`. OpenRLHF also needs the name of the head's attribute,
# `value_head_prefix`: ours is `score`, a `Linear(hidden, 1, bias=False)`, exactly its reward-model head.
#
# One caution for OpenRLHF users: with `normalize_reward=True`, OpenRLHF 0.11.2 on transformers 5.15 or newer
# does not restore these `mean`/`std` values into its model (an upstream bug, OpenRLHF pull request #1343), and
# the "normalised" rewards it returns are wrong. Until that lands, load with `normalize_reward=False` and apply
# `(r - mean) / std` yourself with the numbers below (they are also in `reward_head.json`).

# %%
from helpers.merge import fit_normalization

norm = fit_normalization(scores_merged)
merged.config.update({"value_head_prefix": "score", **norm})
print({k: getattr(merged.config, k) for k in ("value_head_prefix", "mean", "std", "pad_token_id")})

# %% [markdown]
# ## Save, for every reader
# The weights are already on disk; `config.save_pretrained` writes `config.json` again with the keys above (class
# `LlamaForSequenceClassification`, one label, the pad id), and the tokenizer goes beside it, chat template
# included, so the folder is complete on its own.
#
# "Complete" is not yet "read the same everywhere". Two readers get a different number from this folder as
# transformers 5 writes it, with no error:
# - **transformers 4.x** (RewardBench and many tools still use it) looks for `rope_theta`; transformers 5 writes
#   only `rope_parameters`, so 4.x falls back to 10000 instead of the model's own value (500000 for LLaMA 3, 100000
#   for SmolLM2; the `rope_theta` printed below) and every position is encoded differently. 4.x also lacks the
#   tokenizer class 5 names (`TokenizersBackend`).
# - **vLLM** serves a one-label classifier through its `classify` pooler, which applies a sigmoid unless the
#   config says `problem_type: "regression"`: you would get σ(reward), a number in (0, 1), not the reward.
#
# `write_consumer_keys` adds the keys each of them reads (5 reads the folder exactly as before); `docs/consumers.md`
# shows each consumer's own code scoring the same probes.

# %%
from helpers.merge import write_consumer_keys

merged.config.save_pretrained(merged_dir)
tokenizer.save_pretrained(merged_dir)
print("added for transformers 4.x and vLLM:", write_consumer_keys(merged_dir))
config = json.loads((merged_dir / "config.json").read_text())
print(sorted(p.name for p in merged_dir.iterdir()))
{k: config.get(k) for k in ("architectures", "id2label", "pad_token_id", "value_head_prefix", "mean", "std")}

# %% [markdown]
# ## The LLaMA-Factory layout
# LLaMA-Factory keeps a reward model as a **causal LM plus a separate value head**: `value_head.safetensors`
# with `v_head.summary.weight` `[1, hidden]` and `v_head.summary.bias` `[1]`. Its config therefore says
# `LlamaForCausalLM` — normal for this layout. Our head has no bias, so the bias is zero. The
# decoder shards are hard links to the merged ones (no second copy, 15 GB on the 8B profile). The only new weights
# are the base's `lm_head`, where the model has a separate one (LLaMA 3, `tiny`); SmolLM2 ties it to the embeddings,
# so there nothing is added.
# (Tutorials often say such a model needs "LLaMA-Factory's own API" to load: not for *our* main folder, which
# loads with plain transformers, as we check below.)

# %%
from helpers.merge import export_llamafactory

lf_dir = export_llamafactory(merged_dir, tokenizer, merged_dir / "llamafactory", base_path=rm_path, token=get_hf_token())
lf_config = json.loads((lf_dir / "config.json").read_text())
print(sorted(p.name for p in lf_dir.iterdir()))
print("architectures:", lf_config["architectures"])

# %% [markdown]
# The settings that use it. LLaMA-Factory's own `llamafactory-cli export` keeps the value head only with
# `stage: rm` (LLaMA-Factory's "stage" parameter); PPO then loads this folder with `reward_model_type: full`.
#
# LLaMA-Factory renders chats with templates of its own (`src/llamafactory/data/template.py`), and its PPO hands the
# reward model the policy's token ids as they are: the policy must share the reward model's tokenizer, and the
# `template` must render what the reward model was trained on. `export_llamafactory` picks it from the chat template
# (`llamafactory_template`): `llama3` for LLaMA 3's (`tiny`, `llama3-8b`), `smollm2` for SmolLM2's ChatML (`smol`).
# Neither is an exact copy, and the difference depends on the template:
# - LLaMA-Factory's `llama3` does not strip the message text, while Meta's template (and ours) does. A response
#   ending in a space or a newline therefore gets one token more in LLaMA-Factory than the reward model was trained
#   on, and a slightly different reward. Strip responses before scoring there.
# - LLaMA-Factory's `smollm2` writes SmolLM2's default system message with a full stop ("… trained by Hugging
#   Face."), SmolLM2's own template without one, so every conversation without a system message would start with
#   tokens the reward model never saw. Where they differ, the YAML sets LLaMA-Factory's `default_system` to the
#   model's own message. (SmolLM2's own template does not strip the text either, so whitespace is no issue there.)
#
# This run's YAML (the `template` line, and `default_system` where needed):

# %%
# NBVAL_CHECK_OUTPUT
print((lf_dir / "llamafactory_ppo.yaml").read_text())

# %% [markdown]
# ## The manifest
# `reward_head.json` records what a consumer must get right to read a reward from this folder: the head's key
# and shape, bias or not, the pad id and the pooling rule, a fingerprint of the chat template, the
# normalisation, and where the model came from.

# %%
# NBVAL_CHECK_OUTPUT
from helpers.merge import write_reward_head_manifest

manifest = write_reward_head_manifest(merged_dir, tokenizer, base_model=profile.rm_base, adapter_dir=adapter_dir,
                                      normalization=norm, run_dir=run_dir)
{k: manifest[k] for k in ("head", "pad_token_id", "pooling", "chat_template_sha256", "dtype")}

# %% [markdown]
# ## Verify what was saved
# We drop every model from memory and check the folder as a stranger would use it: required files, a plain
# `AutoModelForSequenceClassification.from_pretrained` with **zero** missing or unexpected keys, a `[1, hidden]`
# head equal to the adapter's, a pad id, a chat template, a manifest that matches, finite probe scores.

# %%
from helpers.verify import verify_reward_model

del merged
gc.collect()
if torch.cuda.is_available():
    torch.cuda.empty_cache()
load_kwargs = {"dtype": dtype, **gpu_load} if device_map else {}  # an 8B model on a T4: GPU + CPU
report = verify_reward_model(merged_dir, probes, adapter_dir=adapter_dir, **load_kwargs)
print("missing keys:", report["missing_keys"], "| unexpected keys:", report["unexpected_keys"])
report["checks"]

# %% [markdown]
# Does the LLaMA-Factory copy give the same rewards? LLaMA-Factory applies `v_head` to the causal LM's last
# hidden state at the last real token; we do the same from the saved files and compare with the merged
# sequence-classification model, answer by answer.

# %%
from helpers.merge import llamafactory_scores

answers = [row["prompt"] + row[side] for side in ("chosen", "rejected") for row in test]
lf_scores = llamafactory_scores(lf_dir, tokenizer, answers, batch_size=profile.eval_batch_size, **load_kwargs)
lf_diff = float(np.abs(lf_scores - np.concatenate([scores_merged["chosen"], scores_merged["rejected"]])).max())
print(f"max |LLaMA-Factory v_head - score head| over {len(answers)} answers: {lf_diff:.2e} (allowed {allowed:.2e})")
assert lf_diff <= allowed

# %% [markdown]
# Last, the real test of a saved model: a **fresh Python process** that imports only `torch` and
# `transformers` — not this kit — loads the folder and scores the probes one by one.

# %%
from helpers.verify import fresh_process_scores

fresh = fresh_process_scores(merged_dir, probes, dtype=load_kwargs.get("dtype"), device_map=device_map)
fresh_diff = float(np.abs(fresh - np.array(report["probe_scores"])).max())
print(f"fresh process: {np.round(fresh[:4], 4)} ... max |diff| to the verifier's scores {fresh_diff:.2e}")
assert fresh_diff <= allowed

# %% [markdown]
# ## The pitfall: a merge without the head
# Train LoRA without `task_type="SEQ_CLS"` and the adapter holds no `score` weights. We make such an adapter by
# dropping the head from ours, then merge it the same way. Nothing replaces the base's random `score` (the
# MISSING line of the reload above), so PEFT's merge saves that random head; `merge_adapter_by_shard` does the
# same, drawing a head as transformers initialises one. Its rewards are a random projection
# of the hidden state: whether they rank answers well is luck — the mirror image of that head is an equally
# likely draw and ranks them exactly the other way round:

# %%
from helpers.env import large_files_dir
from helpers.merge import MODEL_FILES, RewardModelError, strip_reward_head

pitfall_dir = large_files_dir(run_dir) / "rm_pitfall"  # the broken copies, kept apart from rm_merged
headless = strip_reward_head(adapter_dir, pitfall_dir / "adapter_without_head")
merge_adapter_by_shard(rm_path, headless, pitfall_dir / "merged", dtype, tokenizer.pad_token_id, token=get_hf_token(),
                       seed=SEED)
tokenizer.save_pretrained(pitfall_dir / "merged")
bad = AutoModelForSequenceClassification.from_pretrained(pitfall_dir / "merged", dtype=dtype, use_safetensors=True,
                                                         **gpu_load)
print(f"score head in this adapter: {adapter_head(headless)}; merged anyway into {pitfall_dir / 'merged'}")

# %%
bad_scores = score_pairs(bad, tokenizer, test, batch_size=profile.eval_batch_size)
lucky = pairwise_accuracy(bad_scores["chosen"], bad_scores["rejected"])
print(f"held-out accuracy: random head {lucky:.2f}, its mirror image {1 - lucky:.2f}, "
      f"trained head {accuracy_merged:.2f}")

# %% [markdown]
# A random head far from 0.5, either way, is not bad luck. A head `w` ranks a pair right when
# `w · (h_chosen − h_rejected) > 0`, with `h` the hidden state it reads. If the pairs' difference vectors share one
# direction, a random `w` lands on one side of it for most pairs at once: mostly right or mostly wrong, rarely in
# between. What would give them a shared direction? A surface feature such as length could, if the rejected answers
# were consistently the longer ones; below we count how often they are. The other candidate is training: the body
# under this random head is the **trained** one (the LoRA update is merged into it), and training was about exactly
# that, making chosen and rejected answers differ in a way one linear head can read. So we draw 200 random heads
# twice, on the trained body's hidden states and on the untrained base's (kept at the reload above), and measure how
# aligned the pairs' differences are in each (mean cosine with their mean; 0: no shared direction):

# %%
from helpers.diagnose import random_head_spread
from helpers.plots import plot_random_heads, save_figure
from helpers.audit import token_lengths

tokens = token_lengths(test, tokenizer)
longer = sum(r > c for c, r in zip(tokens["chosen_tokens"], tokens["rejected_tokens"]))
print(f"the rejected answer is the longer one (in tokens) in {longer} of {len(test)} held-out pairs")
h_trained = {side: last_token_states(bad, tokenizer, [r["prompt"] + r[side] for r in test])
             for side in ("chosen", "rejected")}
spreads = {name: random_head_spread(h["chosen"], h["rejected"], n_heads=200, seed=SEED)
           for name, h in (("untrained base", h_untrained), ("trained body", h_trained))}
for name, spread in spreads.items():
    accuracies = spread["accuracies"]
    print(f"{name:14}: random heads' accuracy {accuracies.min():.2f} to {accuracies.max():.2f}, "
          f"{np.mean(abs(accuracies - 0.5) >= 0.2):.0%} of them 0.2 or more from 0.5; "
          f"mean cosine {spread['mean_cosine_to_mean_difference']:.2f}")
fig = plot_random_heads(spreads["trained body"]["accuracies"], trained=accuracy_merged,
                        untrained=spreads["untrained base"]["accuracies"])
save_figure(fig, run_dir, "03_random_heads")
fig

# %% [markdown]
# Length cannot be it: the rejected answer is the longer one in fewer than half of the pairs (the count above). The
# spread comes from training. On the untrained base the random heads stay nearer 0.5 and the pairs' differences are
# less aligned; on the trained body the heads spread out and the differences are more aligned. That is the lesson of
# the pitfall: a merge that lost its head still carries the trained body, and a random head on top of it can look
# "good" (or "inverted") on held-out data. This is why accuracy alone cannot tell a trained head from a lucky one: the
# trained head must also match the *adapter's* head value for value, which is what the verifier checks next.

# %% [markdown]
# Loaded on its own, that folder raises no warning at all: the random head *was* saved, so nothing is missing,
# and every check that only looks at the folder passes:

# %%
alone = verify_reward_model(pitfall_dir / "merged", probes, strict=False, required=MODEL_FILES, **load_kwargs)
print("missing keys:", alone["missing_keys"], "| passes without its adapter:", alone["ok"])

# %% [markdown]
# Only the adapter it came from gives it away, which is why the verifier takes `adapter_dir`. In strict mode (the
# default) it raises; `expect_error` shows the message the learner would get:

# %%
# NBVAL_CHECK_OUTPUT
from helpers import expect_error

with expect_error(RewardModelError):
    verify_reward_model(pitfall_dir / "merged", probes, adapter_dir=headless, required=MODEL_FILES, **load_kwargs)

# %% [markdown]
# **The "newly initialized" symptom, explained.** Loading a reward model and seeing `score.weight | MISSING` ("newly
# initialized") means the checkpoint has no head, and transformers made a random one: expected when you *create*
# a reward model from a base LM (notebook 02, the reload above), a bug when you *load a trained one*. The usual
# cause is saving the causal LM instead of the classifier; the LLaMA-Factory folder is exactly that, so loading
# it as a sequence classifier shows the symptom (the verifier reads transformers' load report for us):

# %%
as_classifier = verify_reward_model(lf_dir, probes, strict=False, required=MODEL_FILES, **load_kwargs)
caught = verify_reward_model(pitfall_dir / "merged", probes, adapter_dir=headless, strict=False, required=MODEL_FILES, **load_kwargs)
print("missing keys:", as_classifier["missing_keys"])
print("head check:", as_classifier["checks"]["head"])

# %% [markdown]
# The broken merged copy has served its purpose, and on the 8B profile it takes 15 GB of disk: we delete it and
# keep only the small head-less adapter.

# %%
import shutil

del bad
shutil.rmtree(pitfall_dir / "merged")
print(sorted(p.name for p in pitfall_dir.iterdir()))

# %%
from helpers import save_metrics

metrics = {
    "max_abs_diff_merged_vs_adapter": merge_diff, "merge_dtype": str(dtype).replace("torch.", ""),
    "tolerance": allowed, "weight_diff_shard_vs_in_memory": weight_diff, "agreement_8bit_vs_merged": drift["agreement"],
    "spearman_8bit_vs_merged": drift["spearman"], "max_abs_diff_8bit_vs_merged": drift["max_abs_diff"],
    "trained_quantization": trained["quantization"], "accuracy_as_trained": accuracy_8bit,
    "accuracy_merged": accuracy_merged, "max_abs_diff_llamafactory_vs_merged": lf_diff,
    "max_abs_diff_fresh_process": fresh_diff, "missing_keys": report["missing_keys"],
    "unexpected_keys": report["unexpected_keys"], "head_shape": report["head_shape"],
    "pad_token_id": report["pad_token_id"], "verified": report["ok"], "normalization": norm,
    "pitfall_caught": not caught["ok"], "test_pairs": len(test), "merged_dir": str(merged_dir),
    "rejected_longer_pairs": longer,
    "random_heads": {name: {"min": float(sp["accuracies"].min()), "max": float(sp["accuracies"].max()),
                            "std": float(sp["accuracies"].std()),
                            "mean_cosine": sp["mean_cosine_to_mean_difference"]} for name, sp in spreads.items()},
}
save_metrics(run_dir, "03_merge_value_head", metrics)
{k: metrics[k] for k in ("max_abs_diff_merged_vs_adapter", "agreement_8bit_vs_merged", "spearman_8bit_vs_merged")}

# %% [markdown]
# ## Try it
# Level 1: set `MERGE_DTYPE = "bfloat16"` and rerun: the merge error grows from a few 1e-6 to a few 1e-2 (0.06 in
# one `tiny` run, against an allowed 0.115: relative to the rewards' size). Level 2: copy `rm_merged`
# somewhere, delete its `tokenizer.json` (or set `pad_token_id` to `null` in its `config.json`) and run `verify_reward_model(copy, probes, strict=False)["checks"]`: which check
# fails, and does its message tell you the fix? Level 3: normalise the merged rewards yourself with the `mean`
# and `std` from `config.json` — as OpenRLHF does — and confirm that on the held-out answers they have mean 0
# and standard deviation 1. The check cell below asks one number of Level 3: what a raw reward of 0 becomes
# after that normalisation (*not attempted yet* while `answer` is `None`; solutions: `notebooks/solutions.py`).

# %%
from helpers.exercises import check_exercise

answer = None  # Level 3: (0 - mean) / std, a number
check_exercise("03.1", answer, run_dir, profile)

# %% [markdown]
# ## What you have now
# - `rm_merged/`: a plain `AutoModelForSequenceClassification` (safetensors shards with an index, one label, pad
#   id, chat template), with OpenRLHF's `value_head_prefix`, `mean` and `std` in its `config.json`, and
#   `reward_head.json`: head, pad, pooling, template fingerprint, normalisation, provenance, and which consumer
#   reads which folder (the config also carries the keys transformers 4.x and vLLM read);
# - `rm_merged/llamafactory/`: the causal-LM layout with `value_head.safetensors` and PPO settings;
# - `rm_pitfall/adapter_without_head/`: the head-less adapter (its merged copy was deleted above);
# - `RUN_DIR/figures/03_random_heads.png`: 200 random heads' held-out accuracy on the trained body and on the
#   untrained base, against the trained head's;
# - `RUN_DIR/metrics/03_merge_value_head.json`: merge error, 8-bit drift, LLaMA-Factory and fresh-process checks,
#   the merge dtype and the normalisation — with the adapter, all it takes to rebuild `rm_merged/`.
#
# Outside Colab `rm_merged/` and `rm_pitfall/` are in `RUN_DIR`. In Colab they are on this runtime's local disk
# (printed at the top: `/content/reward-lab-local/...`), because the 8B merge is 15 GB and a free Drive holds 15 GB
# in all; notebooks 04, 05 and 06 run in runtimes of their own and rebuild `rm_merged/` from the adapter on Drive.
#
# ## Next
# [04 · Score responses](04_score_responses.ipynb): load this folder the right way, score single answers and
# batches, use the normalisation, and look at what the reward model actually learned.
