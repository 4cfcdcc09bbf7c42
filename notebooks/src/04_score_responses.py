# %% [markdown]
# # 04 · Score responses with the reward model
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/reward-lab/reward-lab/blob/main/notebooks/04_score_responses.ipynb)
#
# "How do I get a score for one response from my trained reward model?" is the most asked question about
# reward models. The answer has three parts: load it so the trained head is really there, feed it
# exactly the chat template it was trained on, and read the number at the right token. Then we look at what
# the model actually learned: how calibrated its preferences are, and whether it just likes long answers.
#
# **You will learn**
# - the wrong way to load (a fresh random head, the "newly initialized: score.weight" warning) and the right way;
# - `RewardScorer`: one response, a batch (equal results, in input order), `compare`, best-of-n, normalised scores;
# - held-out accuracy, reward histograms, calibration (predicted vs observed preference) and length bias;
# - scoring a whole file from the command line, resumably.
#
# | profile | hardware | time |
# |---|---|---|
# | `tiny` | any CPU | under a minute |
# | `smol` | any CPU, offline | about 2 minutes on 2 CPU cores |
# | `llama3-8b` | T4 16 GB (the merged model is loaded in 8-bit) | 5–10 minutes, plus rebuilding the merged model on a fresh Colab runtime (download and shard merge) |

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
BATCH_SIZE = 16

# %% [markdown]
# The merged reward model of notebook 03 is the input here. In Colab this notebook runs in a runtime of its own,
# and 03 wrote the merged model (15 GB on the 8B profile) to *its* runtime's local disk, which is gone now:
# `ensure_merged_model` then rebuilds it on this runtime's disk, shard by shard, from what 03 kept on Drive (the
# adapter, the merge dtype and the normalisation). Elsewhere it simply finds `RUN_DIR/rm_merged`.

# %%
from datasets import load_dataset
from helpers import check_hardware, get_hf_token, get_profile, prepare_run_dir, set_seed
from helpers.data import heldout_subset, require_notebook_inputs
from helpers.merge_shards import ensure_merged_model

profile = get_profile(PROFILE)
run_dir = prepare_run_dir(RUN_DIR)
require_notebook_inputs("04_score_responses", run_dir, profile)  # stops, naming the notebook to run first
hardware = check_hardware(profile)
set_seed(SEED)
merged_dir = ensure_merged_model(run_dir, profile, token=get_hf_token())  # Colab: rebuilt on this runtime's disk
test = load_dataset("json", data_files=str(run_dir / "data" / "test.jsonl"), split="train")
test = heldout_subset(test, profile.heldout_limit, seed=SEED, what="held-out pairs")  # all, unless capped (smol)
# A full-precision 8B model (16 GB in fp16) does not fit a T4 next to anything else: score in 8-bit there.
score_quantization = None if profile.is_local or hardware["gpu_memory_gib"] >= 38 else "8bit"
print(f"{len(test)} held-out pairs; scoring with quantization={score_quantization}")

# %% [markdown]
# Where that prints `8bit` (the 8B model on a GPU under 38 GiB, a T4 or an L4), remember notebook 02's finding: **an
# 8-bit model's reward depends a little on which other texts share its batch** (LLM.int8 chooses its outlier columns
# over the whole batch): the same text can score a little differently in another batch, so a small difference
# between two answers may be within that noise. In full precision (`None`) the batch does not matter.

# %% [markdown]
# ## The wrong way to load
# Point `AutoModelForSequenceClassification` at the **base** model (or at a checkpoint saved without its
# head) and transformers happily builds a reward model: it creates the `score` layer at random and says so
# — `score.weight | MISSING` ("newly initialized"). That is the symptom learners most often ask about. Every score is then noise:

# %%
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig
from helpers.score import pairwise_accuracy, score_pairs, spearman
from helpers.train import prepare_reward_tokenizer

base_path = profile.model_path("rm_base", run_dir)
wrong, info = AutoModelForSequenceClassification.from_pretrained(
    base_path, num_labels=1, output_loading_info=True, use_safetensors=True,
    quantization_config=None if profile.is_local else BitsAndBytesConfig(load_in_8bit=True))
wrong_tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(base_path))
wrong.config.pad_token_id = wrong_tokenizer.pad_token_id
sample = test.select(range(min(32, len(test))))
wrong_scores = score_pairs(wrong, wrong_tokenizer, sample)
print("missing keys:", info["missing_keys"])
print(f"accuracy with a random head: {pairwise_accuracy(wrong_scores['chosen'], wrong_scores['rejected']):.2f}")

# %% [markdown]
# Whatever this number is, it is not this model's: the head was drawn at random a moment ago. Do not expect 0.5
# either: notebook 03 drew 200 random heads and printed how far from 0.5 they land, on this untrained base's hidden
# states and on the trained body's. Where the chosen and rejected answers differ in a shared direction, a random head
# ranks many pairs alike, rightly or wrongly. `RewardScorer.from_pretrained` refuses such a model outright:

# %%
# NBVAL_CHECK_OUTPUT
from helpers import expect_error
from helpers.score import RewardScorer

del wrong
with expect_error(ValueError):
    RewardScorer.from_pretrained(base_path, quantization=score_quantization)

# %% [markdown]
# ## The right way
# Load the **merged** reward model of notebook 03. Nothing may be missing or unexpected: the head is part of
# the checkpoint. The scorer also sets the dedicated pad token (the reward is read at the last token that is not
# the pad id, so the pad must be a token the chat template never writes: LLaMA 3 Instruct's EOS `<|eot_id|>`, for
# one, ends every turn and would move the reading one token early; see notebook 02), and reads the normalisation
# fitted in notebook 03.

# %%
scorer = RewardScorer.from_pretrained(merged_dir, quantization=score_quantization)
assert not scorer.loading_info["missing_keys"] and not scorer.loading_info["unexpected_keys"], scorer.loading_info
print(scorer.loading_info, f"| normalisation mean {scorer.mean:.3f} std {scorer.std:.3f}")

# %% [markdown]
# ### What `RewardScorer` does, in one forward pass
# Before letting a class hide it: a reward is the `score` head applied to the decoder's hidden state at the
# **last real token** of the chat-templated conversation. In a batch, shorter rows are padded on the right, so
# "last real token" is the last position whose attention mask is 1. Here is that, by hand, for the chosen and
# the rejected answer of one held-out pair, next to what the scorer returns:

# %%
import torch

model, tok = scorer.model, scorer.tokenizer
pair = test[0]
ids = [tok.apply_chat_template(pair["prompt"] + pair[side], tokenize=True, return_dict=False)
       for side in ("chosen", "rejected")]
width = max(len(x) for x in ids)
input_ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in ids], device=model.device)
attention = (input_ids != tok.pad_token_id).long()
with torch.no_grad():
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention).last_hidden_state  # [2, width, h]
    last = attention.sum(dim=1) - 1  # the last real token of each row
    by_hand = model.score(hidden[torch.arange(2), last]).float().squeeze(-1).cpu().numpy()
by_scorer = scorer.score_batch([(pair["prompt"], pair["chosen"]), (pair["prompt"], pair["rejected"])])
print(f"lengths {[len(x) for x in ids]}, read at positions {last.tolist()}")
print(f"by hand {by_hand.round(4)}  RewardScorer {by_scorer.round(4)}")
assert abs(by_hand - by_scorer).max() <= 1e-3 * max(1.0, abs(by_scorer).max())

# %% [markdown]
# ### One response
# A prompt and a response, as plain strings or as message lists. The reward alone has no unit; what means
# something is the difference between two answers to the same prompt, and `compare` turns it into the
# Bradley–Terry probability `σ(r_a − r_b)` that the model was trained to predict.

# %%
row = test[0]
prompt, good, bad = row["prompt"], row["chosen"], row["rejected"]
print(prompt[-1]["content"][:120])
for name, answer in (("chosen", good), ("rejected", bad)):
    print(f"{name:9} reward {scorer.score(prompt, answer):+.3f}, "
          f"normalised {scorer.score(prompt, answer, normalized=True):+.2f}")
print(f"P(chosen preferred) = {scorer.compare(prompt, good, bad):.3f}")

# %% [markdown]
# ### A batch
# `score_batch` sorts inputs by length so each batch pads little, then restores the input order. Padding must
# not change a score: batched and one-at-a-time results agree to float precision.

# %%
import numpy as np

items = [(r["prompt"], r[side]) for r in test for side in ("chosen", "rejected")]
batched = scorer.score_batch(items, batch_size=BATCH_SIZE, progress=True)
single = np.array([scorer.score(p, a) for p, a in items[:16]])
batch_vs_single = float(np.abs(batched[:16] - single).max())
print(f"{len(items)} responses scored; batch vs single on 16 of them: max |diff| = {batch_vs_single:.2e}")

# %% [markdown]
# ## How good is it on pairs it never saw?

# %%
chosen, rejected = batched[0::2], batched[1::2]
test_accuracy = pairwise_accuracy(chosen, rejected)
print(f"held-out pairwise accuracy {test_accuracy:.3f} on {len(test)} pairs (chance: 0.5)")

# %% [markdown]
# Accuracy counts wins; the margin shows how sure each win or loss is. Each bar below is a number of held-out
# pairs with that gap `r(chosen) − r(rejected)`: the pairs left of 0 are the model's mistakes, and a mistake by a
# wide gap is worth reading (exercise 04.1 asks for the worst one).

# %%
from helpers.plots import plot_margin_histogram, save_figure

fig = plot_margin_histogram(chosen, rejected, title="merged model")
save_figure(fig, run_dir, "04_margin_histogram")
fig

# %% [markdown]
# ## Calibration
# If the model says "a beats b with probability 0.8", is it right 80% of the time? We show each held-out pair
# in a random order, bin the predicted probabilities, and compare each bin's average prediction with how often
# the first answer really was the chosen one. The expected calibration error (ECE) is the average gap.

# %%
from helpers.diagnose import calibration_table
from helpers.plots import plot_calibration

calibration = calibration_table(chosen, rejected, n_bins=10, seed=SEED)
fig = plot_calibration(calibration)
save_figure(fig, run_dir, "04_calibration")
print(f"ECE {calibration['ece']:.3f} over {calibration['pairs']} pairs")
fig

# %% [markdown]
# ## Length bias
# Reward models love long answers, because in most preference data the chosen answer *is* longer. Call a pair
# *length-balanced* when its chosen answer is not longer than the rejected one: on those pairs, length cannot
# explain a correct choice. The kit's data marks them (`length_balanced`); for a file without that column the
# cell below computes it from the token counts. Compare accuracy there with the rest, and correlate reward with
# length over every response. Length here is the **response's** own tokens: prompt and template are the same
# for both answers of a pair and would only blur the picture.

# %%
from helpers.diagnose import length_bias

def response_tokens(answer) -> int:
    text = answer if isinstance(answer, str) else answer[-1]["content"]
    return len(scorer.tokenizer(text, add_special_tokens=False)["input_ids"])

lengths = [response_tokens(a) for _, a in items]
if "length_balanced" in test.column_names:
    balanced, balanced_source = test["length_balanced"], "the data's length_balanced column"
else:
    balanced = [c <= r for c, r in zip(lengths[0::2], lengths[1::2])]
    balanced_source = "token counts (no length_balanced column): chosen not longer than rejected"
bias = length_bias(batched, lengths, chosen, rejected, balanced)
print(f"length-balanced pairs from {balanced_source}: {bias['pairs_length_balanced']} of {len(test)}")
bias

# %%
from helpers.plots import plot_length_bias

fig = plot_length_bias(lengths, batched)
save_figure(fig, run_dir, "04_length_bias")
fig

# %% [markdown]
# ## Best of n
# The simplest use of a reward model at inference time: sample several answers, keep the one it scores
# highest. Here the candidates for one held-out prompt are its chosen and rejected answers plus an off-topic
# answer borrowed from another prompt.

# %%
candidates = [row["chosen"], row["rejected"], test[len(test) // 2]["chosen"]]
best = scorer.best_of_n(row["prompt"], candidates)
for i, (c, r) in enumerate(zip(candidates, best["rewards"])):
    print(f"{'*' if i == best['index'] else ' '} {r:+.3f}  {c[-1]['content'][:90]!r}")

# %% [markdown]
# Look at which answer won. If the off-topic answer scored highest, the reward model has just picked an answer to
# a *different question*. That is not a bug in the code: it is what a Bradley–Terry reward model learns. It was
# only ever shown two answers **to the same prompt** and asked which is better, so nothing in its training ever
# penalised an answer for ignoring the prompt. Whatever makes an answer look good in general (here: confident,
# well-formed, not rambling) can earn a high reward regardless of the question. How much does this model read
# the prompt at all? Score every held-out answer under its own prompt and under another prompt, and compare:

# %%
other = test[len(test) // 2]
print(f"the off-topic answer: {scorer.score(other['prompt'], other['chosen']):+.3f} under its own prompt, "
      f"{best['rewards'][2]:+.3f} under this one")
shuffled = [test[(i + 1) % len(test)]["prompt"] for i in range(len(test))]  # every answer under another prompt
own = scorer.score_batch([(r["prompt"], r["chosen"]) for r in test], batch_size=BATCH_SIZE)
foreign = scorer.score_batch([(p, r["chosen"]) for p, r in zip(shuffled, test)], batch_size=BATCH_SIZE)
prompt_sensitivity = {"spearman_own_vs_other_prompt": spearman(own, foreign),
                      "mean_drop_under_other_prompt": float((own - foreign).mean())}  # own - other: > 0 is a drop
print(f"chosen answers, own prompt vs another prompt: rank correlation "
      f"{prompt_sensitivity['spearman_own_vs_other_prompt']:.2f}, mean reward under own prompt minus under another "
      f"{prompt_sensitivity['mean_drop_under_other_prompt']:+.3f}")

# %% [markdown]
# A rank correlation near 1 with a mean difference near 0 (or below it: the answers scoring *higher* under a
# prompt they do not answer) means the reward is mostly a property of the answer alone: the model barely checks
# that the answer fits the question. Best-of-n, or a policy trained against such a model,
# will exploit that. The fixes are in the data (pairs whose rejected side is a fluent answer to another prompt) or
# in a second check of relevance, not in the scoring code.

# %% [markdown]
# ## Export the scores
# One row per held-out pair: both rewards, normalised rewards, and P(chosen preferred). JSONL for programs,
# CSV for spreadsheets.

# %%
import csv, json

scores_dir = run_dir / "scores"
scores_dir.mkdir(exist_ok=True)
rows = [{"id": r.get("id"), "source_line": r["source_line"], "category": r.get("category"),
         "reward_chosen": float(c),
         "reward_rejected": float(j), "z_chosen": (float(c) - scorer.mean) / scorer.std,
         "z_rejected": (float(j) - scorer.mean) / scorer.std, "p_chosen": float(1 / (1 + np.exp(j - c)))}
        for r, c, j in zip(test, chosen, rejected)]
(scores_dir / "test_scores.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
with open(scores_dir / "test_scores.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
print(f"{len(rows)} rows -> {scores_dir}/test_scores.jsonl and .csv")

# %% [markdown]
# ## A whole file, from the command line
# For files too large for a notebook: `python -m helpers.score_cli` reads JSONL rows `{"prompt", "response"}`,
# shows a progress bar, skips bad lines **by number and reason**, and on a rerun scores only what is missing.
# It is built for long jobs that get interrupted: it streams the input (memory stays flat however long the file),
# appends each scored batch to the output and syncs it to disk before the next, so a killed run loses at most one
# batch; the rerun removes a line cut in half by the kill and scores that row again. A second run on the same
# output while the first is still writing is refused, and so is a run into an output scored from another input,
# model or `--max-length` (a fingerprint is kept beside it: `cli_output.jsonl.fingerprint.json`). Output rows come
# in the order they were scored (shortest first, so batches pad little): join them to the input by `line` or `id`.
# Below, a file with two deliberately broken lines.

# %%
import subprocess
lines = [json.dumps({"id": r.get("id") or f"line {r['source_line']}", "prompt": r["prompt"],
                    "response": r["chosen"]}, ensure_ascii=False)
         for r in test.select(range(6))] + ['{"prompt": "no response field"}', "{broken json"]
(scores_dir / "cli_input.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
for old in scores_dir.glob("cli_output.jsonl*"):  # a fresh demo: the CLI refuses an output made from other input
    old.unlink()
cmd = [sys.executable, "-m", "helpers.score_cli", "--model", str(merged_dir),
       "--input", str(scores_dir / "cli_input.jsonl"), "--output", str(scores_dir / "cli_output.jsonl")]
if score_quantization:
    cmd += ["--quantization", score_quantization]
from helpers.env import kit_subprocess_env

result = subprocess.run(cmd, capture_output=True, text=True, env=kit_subprocess_env())  # Colab: kit not installed
print(result.stderr[-600:].strip().splitlines()[-3:], result.stdout.strip(), sep="\n")

# %% [markdown]
# ## Millions of responses, or a reward server: vLLM
# The CLI is right for a file of thousands of rows. For millions, or for a service an RL job calls while it
# trains, run this same folder on an engine built for it: vLLM's **pooling runner** batches requests
# continuously and runs one engine per GPU with `--data-parallel-size`. Nothing to convert: notebook 03 wrote
# `problem_type: "regression"` into `config.json`, so vLLM's classify output `probs[0]` is the raw reward (without
# that key vLLM applies a sigmoid to a one-label model). Send chat messages (the server applies the chat
# template) or token ids, not the templated text as a string: with a tokenizer that adds BOS to every string, as
# LLaMA 3's (and `tiny`'s) does, the string gets a second BOS token by default (SmolLM2's adds none). The
# commands for this run's model (vLLM is not installed here: it needs a GPU and an environment of its own;
# `docs/consumers.md` shows its CPU build giving the kit's rewards):

# %%
example = {"model": str(merged_dir), "messages": test[0]["prompt"] + test[0]["chosen"]}
print(f"vllm serve {merged_dir} --runner pooling --data-parallel-size 2")
print(f"curl -s localhost:8000/classify -H 'Content-Type: application/json' -d '{json.dumps(example, ensure_ascii=False)}'")
print("reward = response['data'][0]['probs'][0]; normalised: (reward - mean) / std, mean/std from reward_head.json")
print(f"this kit's reward for that answer: {scorer.score(test[0]['prompt'], test[0]['chosen']):+.4f}")

# %%
from helpers import save_metrics

metrics = {
    "test_accuracy": test_accuracy, "test_pairs": len(test), "batch_vs_single_max_abs_diff": batch_vs_single,
    "calibration_ece": calibration["ece"], **bias, "truncated_inputs": scorer.truncated,
    "random_head_accuracy": pairwise_accuracy(wrong_scores["chosen"], wrong_scores["rejected"]),
    "cli_returncode": result.returncode, "score_quantization": score_quantization, **prompt_sensitivity,
}
save_metrics(run_dir, "04_score_responses", metrics)
{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}

# %% [markdown]
# ## Try it
# Level 1: which held-out pair does this reward model get most wrong? Give its `id` (the most negative
# `reward_chosen - reward_rejected` in `RUN_DIR/scores/test_scores.jsonl`), then read both answers: what might
# the model have latched onto? The check cell says *not attempted yet* while `answer` is `None`.
# Level 2 (explore): write two answers of your own to `prompt`, one helpful, one rude, and `compare` them; then
# make the rude one three times longer: does the reward follow the content or the length?
# Level 3 (explore): add a line with an empty response to `RUN_DIR/scores/cli_input.jsonl`, rerun the CLI and check
# that it is reported by line and that the rerun scores only what is new. Solutions: `notebooks/solutions.py`.

# %%
from helpers.exercises import check_exercise

answer = None  # Level 1: an id, e.g. "everyday-008"
check_exercise("04.1", answer, run_dir, profile)

# %%
mine_good = "Here is a clear, correct answer, with the key steps explained."
mine_rude = "Figure it out yourself, this is a stupid question."
print(f"P(your good answer beats your rude one) = {scorer.compare(prompt, mine_good, mine_rude):.2f}")

# %% [markdown]
# ## What you have now
# - `RUN_DIR/scores/test_scores.jsonl` and `.csv`: every held-out pair with both rewards and P(chosen);
# - `RUN_DIR/figures/04_margin_histogram.png`, `04_calibration.png`, `04_length_bias.png`;
# - `RUN_DIR/metrics/04_score_responses.json`: accuracy, batch-vs-single difference, ECE, length bias.
#
# ## Next
# [05 · KTO on unpaired preferences](05_kto_unpaired.ipynb): train a policy from thumbs-up/thumbs-down data and
# judge it with this reward model.
