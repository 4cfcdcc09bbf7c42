# %% [markdown]
# # 01 · Prepare the data: pairs, chat templates, validation, length audit, unpairing
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/reward-lab/reward-lab/blob/main/notebooks/01_prepare_data.ipynb)
#
# A reward model learns from **preference pairs**: one prompt, a *chosen* answer and a *rejected* one. Before
# any training, this notebook makes sure every pair is well formed, that nothing is lost without a reason, and
# that we know how many pairs the trainer would quietly throw away for being too long.
#
# **You will learn**
# - the pairwise format TRL expects, and how a chat template turns a pair into the tokens the model reads;
# - how to load pairs from JSONL, JSON, CSV, Parquet or the Hub and check every row, losing nothing silently;
# - why `RewardTrainer` drops over-length pairs without a word, and how to count and list them first;
# - how pairs become the *unpaired* rows KTO learns from, and how to balance the two classes.
#
# | profile | hardware | time for this notebook |
# |---|---|---|
# | `tiny` | any CPU, offline | under a minute |
# | `smol` | any CPU, offline | under a minute |
# | `llama3-8b` | Colab T4 16 GB or better | about a minute (tokenizer only, no model) |

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
# `PROFILE`, `RUN_DIR` and `SEED` as in notebook 00. `DATA_PATH` and `UNPAIRED_PATH` point at the kit's own
# data; put your own there: a `.jsonl`, `.json`, `.csv` or `.parquet` file (gzipped too), a dataset folder, or
# a Hub dataset name such as `"HuggingFaceH4/ultrafeedback_binarized"` with `DATA_SPLIT = "train_prefs"` and
# `DATA_LIMIT = 2000` (streamed, so the dataset is not downloaded whole). The layouts of the common public datasets
# are recognised row by row (section 1 lists them); only `prompt`/`chosen`/`rejected` in some form are
# required, the kit's extra fields (`category`, `length_balanced`, ...) are optional. `MARGIN = True` turns
# the data's score differences into TRL's `margin` column. `UNPAIRED_PATH = None` trains KTO on your pairs
# alone. With `ON_ERROR = "report"` bad rows are set aside and listed; `"raise"` stops at the first one.

# %% tags=["parameters"]
from helpers import KIT_ROOT
PROFILE = os.environ.get("REWARD_LAB_PROFILE", "llama3-8b")  # "tiny" or "smol": offline CPU courses
RUN_DIR = default_run_dir()  # $REWARD_LAB_RUN_DIR; in Colab on Google Drive; else runs/default
SEED = 42
DATA_PATH = str(KIT_ROOT / "data" / "preferences.jsonl")  # preference pairs: a file, folder or Hub dataset
DATA_SPLIT: str = None  # a Hub or folder dataset's split (default "train"); for a file, keep rows with this `split`
DATA_LIMIT: int = None  # read at most this many rows (e.g. 2000 of a large Hub dataset)
MARGIN = False  # True: score differences (UltraFeedback, SHP) become TRL's `margin` column
UNPAIRED_PATH = str(KIT_ROOT / "data" / "unpaired.jsonl")  # natively unpaired rows for KTO, or None
RATING_THRESHOLD: float = None  # unpaired rows with a `rating` but no `label`: ratings at or above it are desirable
ON_ERROR = "report"  # or "raise"

# %% [markdown]
# The length audit needs the reward model's tokenizer: built by notebook 00 on `tiny` and `smol`, or from the Hub
# cache on a GPU profile. If it is missing, the next cell stops at once and says which notebook to run.

# %%
import time
from transformers import AutoTokenizer
from helpers import get_hf_token, get_profile, prepare_run_dir, set_seed
from helpers.data import require_notebook_inputs
from helpers.train import prepare_reward_tokenizer

start = time.perf_counter()
profile, run_dir = get_profile(PROFILE), prepare_run_dir(RUN_DIR)
set_seed(SEED)
rm_path = profile.model_path("rm_base", run_dir)
require_notebook_inputs("01_prepare_data", run_dir, profile)  # stops, naming the notebook to run first
tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(rm_path, token=get_hf_token()))
data_dir = run_dir / "data"
print(f"profile {profile.name}: max_length={profile.max_length}, kto_batch_size={profile.kto_batch_size}")

# %% [markdown]
# ## 1 · A preference pair
# Each line of the kit's file is one judgement: for this prompt, *chosen* is better than *rejected*. The other
# fields describe the pair: the `failure_mode` of the rejected answer, whether the pair is `length_balanced`
# (the chosen answer is not the longer one, so length alone cannot give the answer away), and its `split`.
# Here is one of the kit's pairs, as it is stored:

# %%
import json

kit_rows = [json.loads(line) for line in (KIT_ROOT / "data" / "preferences.jsonl").open(encoding="utf-8")]
seed_pair = next(row for row in kit_rows if row["prompt"] == "什么是人工智能?")
seed_pair

# %% [markdown]
# TRL's trainers read the **conversational** format: `prompt` is a list of messages (`role`, `content`), and
# `chosen`/`rejected` are the assistant's reply. `load_preferences` brings every layout it knows to that form,
# deciding row by row:
#
# | layout | fields | as in |
# |---|---|---|
# | plain | `prompt`, `chosen`, `rejected` strings | the kit's file |
# | conversational | `prompt` messages, `chosen`/`rejected` one assistant message (or full conversations) | TRL's docs |
# | UltraFeedback | `prompt` string, `chosen`/`rejected` full conversations repeating it, `score_chosen/rejected` | `HuggingFaceH4/ultrafeedback_binarized` |
# | PKU-SafeRLHF | `prompt`, `response_0`, `response_1`, `better_response_id` | `PKU-Alignment/PKU-SafeRLHF` |
# | SHP | `history`, `human_ref_A`, `human_ref_B`, `labels` (1: A preferred), `score_A/B` | `stanfordnlp/SHP` |
# | Axolotl | `context`/`input`/`question`, optional `system`, `chosen`, `rejected`, `rating` | Axolotl-style reward data |
# | hh-rlhf | `chosen`/`rejected` dialogues "\n\nHuman: … \n\nAssistant: …" | `Anthropic/hh-rlhf` |
#
# It also takes a `datasets.Dataset`:

# %%
from datasets import Dataset
from helpers.data import load_preferences

normalised, _ = load_preferences(Dataset.from_list([seed_pair]), on_error="raise")
{key: normalised[0][key] for key in ("prompt", "chosen", "rejected")}

# %% [markdown]
# ## 2 · Chat templates
# The reward model never sees these dictionaries. TRL renders `prompt + chosen` and `prompt + rejected`
# through the tokenizer's **chat template** and scores the two token streams. This is the exact text of the
# chosen side, special tokens and all:

# %%
conversation = normalised[0]["prompt"] + normalised[0]["chosen"]
print(tokenizer.apply_chat_template(conversation, tokenize=False))
ids = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
print(f"{len(ids)} tokens")

# %% [markdown]
# ## 3 · Validation that loses nothing
# Now the whole file. Every row is checked: valid JSON and UTF-8, the fields present and of the right type, no
# empty text, roles and turn order that make sense, chosen different from rejected, no duplicate pairs. In
# `"report"` mode the good rows are kept and each bad one is written to `rejected.jsonl` with its file, line,
# field and reason, so **kept + dropped = read**, always.

# %%
# NBVAL_CHECK_OUTPUT
from helpers.data import load_unpaired

from helpers.data import require_rows

pairs, pairs_report = load_preferences(DATA_PATH, on_error=ON_ERROR, rejected_path=data_dir / "rejected.jsonl",
                                      split=DATA_SPLIT, limit=DATA_LIMIT, margin=MARGIN)
require_rows(pairs_report, "pairs")  # an empty or all-bad file stops here, saying what was read and why
reports = {"pairs": pairs_report}
native = None
if UNPAIRED_PATH:
    native, reports["unpaired"] = load_unpaired(UNPAIRED_PATH, on_error=ON_ERROR,
                                                rejected_path=data_dir / "rejected_unpaired.jsonl",
                                                rating_threshold=RATING_THRESHOLD)
    require_rows(reports["unpaired"], "unpaired rows")
for name, report in reports.items():
    assert report["kept"] + report["dropped"] == report["read"]
    print(f"{name:9} read {report['read']}, kept {report['kept']}, dropped {report['dropped']} "
          f"{report['dropped_by_reason']}, layouts {report['row_formats']}")
    if report["note"]:
        print(f"          note: {report['note']}")
native_report = reports.get("unpaired")

# %% [markdown]
# What does a bad row look like? Here is a small file with two defects: a pair whose two answers are the same,
# and a line that is not valid JSON.

# %%
bad_file = run_dir / "demo_bad_pairs.jsonl"
bad_file.write_text('{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."}\n'
                    '{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Hi!"}\n'
                    '{"prompt": "Count to two.", "chosen": "1, 2."\n', encoding="utf-8")
print(bad_file.read_text(encoding="utf-8"))

# %% [markdown]
# With `on_error="raise"` loading stops at the first bad row, and the message says which file, which line,
# which field, and how to fix it. This cell is *meant* to fail; `expect_error` shows the error it raises:

# %%
# NBVAL_CHECK_OUTPUT
from helpers import expect_error
from helpers.data import DataError

with expect_error(DataError):
    load_preferences(bad_file, on_error="raise")

# %% [markdown]
# In `"report"` mode the same file gives one good pair, and a reason for each of the two others:

# %%
# NBVAL_CHECK_OUTPUT
_, demo_report = load_preferences(bad_file)
print({k: demo_report[k] for k in ("read", "kept", "dropped", "dropped_by_reason")})
for message in demo_report["first_errors"]:
    print("-", message.split(": ", 1)[1])

# %% [markdown]
# ## 4 · Splits
# The kit's file says which pairs are for training and which are held out (split by *prompt*, so no test
# prompt is ever seen in training). A file without a `split` column is split here by prompt with `SEED`.
# Where the rows have a `category`, the counts come per category.

# %%
# NBVAL_CHECK_OUTPUT
from collections import Counter
from helpers.data import split_dataset

pair_splits = split_dataset(pairs, seed=SEED)
native_splits = split_dataset(native, seed=SEED) if native is not None else {"train": None, "test": None}
has_category = "category" in pairs.column_names
for split, part in pair_splits.items():
    print(f"{split:5} {len(part):4} pairs  " + (str(dict(sorted(Counter(part["category"]).items())))
                                                if has_category else "(no category column)"))

# %%
from helpers.plots import plot_category_mix, save_figure

figures = {}
if has_category:
    figures["category_mix"] = plot_category_mix(pairs)
    display(figures["category_mix"])
else:
    print("No `category` column in this data, so no per-category chart.")

# %% [markdown]
# ## 5 · The length audit
# `RewardTrainer` tokenizes both sides and **silently drops** every pair in which either side is longer than
# `max_length`: no warning, no count. `audit_lengths` counts tokens exactly as TRL does (same template, same
# tokenizer) and lists those pairs before you train, with a suggested `max_length`.

# %%
import pandas as pd
from helpers.audit import audit_lengths

audit = audit_lengths(pairs, tokenizer, profile.max_length)
print(f"max_length {profile.max_length}: {audit['over_max_length']} of {audit['pairs']} pairs dropped;"
      f" {audit['identical_after_truncation']} are identical within the first {profile.max_length} tokens")
print(f"suggested max_length: {audit['suggested_max_length']} ({audit['suggestion_rule']})")
pd.DataFrame({(split, side): s for split, sides in audit["stats"].items() for side, s in sides.items()}).T

# %% [markdown]
# The pairs TRL would drop, by name. Shorten them, raise `max_length` (memory grows with it), or accept the
# loss knowingly: the point is that it is *your* decision, written down in the run's report.

# %%
pd.DataFrame(audit["over_max_length_rows"])

# %% [markdown]
# ### Try it
# - *Level 1*: set `try_max_length` to `audit["suggested_max_length"]`. How many training pairs are dropped now?
# - *Level 2*: find the smallest multiple of 64 that keeps **every** training pair (look at the `max` row above)
#   and give it as `answer` in the check cell below: it says *not attempted yet* while `answer` is `None`, fails
#   with a hint on a wrong value, and explains a right one. (Solutions for instructors: `notebooks/solutions.py`.)
# - *Level 3*: what does doubling `max_length` cost? Attention's compute grows with its square; its memory mostly
#   does not. transformers 5.23 runs attention through PyTorch's `scaled_dot_product_attention` by default
#   (`attn_implementation="sdpa"`), whose fused kernels do not store the length × length attention scores of every
#   head and layer, as the `"eager"` attention of older code does. What still grows with the square is the mask
#   that hides padding, built once per forward pass of a padded batch; the other activations grow in proportion to
#   the length.

# %%
try_max_length = profile.max_length  # change me (Level 1)
check = audit_lengths(pair_splits["train"], tokenizer, try_max_length)
print(f"max_length {try_max_length}: {check['over_max_length']} of {check['pairs']} training pairs dropped")

# %%
from helpers.exercises import check_exercise

answer = None  # Level 2: a multiple of 64
check_exercise("01.1", answer, run_dir, profile)

# %% [markdown]
# Token lengths per side and split, with `max_length` as the dashed line. Which side crosses it, and in which
# pairs, depends on the data *and on the tokenizer*: some of the kit's rejected answers are padded with verbiage
# (failure mode `padded_verbosity`), but a tokenizer that spends many tokens per character on one language makes that
# language's pairs long on both sides.

# %%
from helpers.plots import plot_token_lengths

figures["token_lengths"] = plot_token_lengths(audit)
figures["token_lengths"]

# %% [markdown]
# The dropped pairs counted by side, and, where the rows have a `language`, by language, with this tokenizer's
# tokens per character of the answers in each language:

# %%
import numpy as np

over = {side: np.array(audit["lengths"][f"{side}_tokens"]) > profile.max_length for side in ("chosen", "rejected")}
dropped = over["chosen"] | over["rejected"]
print(f"{dropped.sum()} pairs dropped: the chosen side is over max_length in {over['chosen'].sum()}, the rejected "
      f"side in {over['rejected'].sum()} (a pair can count on both sides)")
if "language" in pairs.column_names:
    languages = list(pairs["language"])
    answers = [answer[-1]["content"] for answer in list(pairs["chosen"]) + list(pairs["rejected"])]
    answer_tokens = [len(ids) for ids in tokenizer(answers, add_special_tokens=False)["input_ids"]]
    for language, n in Counter(languages).most_common():
        mine = [i for i, lang in enumerate(languages * 2) if lang == language]  # its chosen and rejected answers
        per_char = sum(answer_tokens[i] for i in mine) / max(1, sum(len(answers[i]) for i in mine))
        n_dropped = sum(d for d, lang in zip(dropped, languages) if lang == language)
        print(f"language {language}: {n} pairs, {n_dropped} dropped; "
              f"{per_char:.2f} tokens per character of the answers")
else:
    print("No `language` column in this data, so no count per language.")

# %% [markdown]
# Read the counts, not a rule of thumb. On `smol`, SmolLM2's tokenizer, trained mostly on English text, spends far
# more tokens per character on the Chinese answers than on the English ones (the last column), so the length cut
# falls mostly on the Chinese pairs, on either side: with this `max_length` the reward model trains on fewer Chinese
# pairs than the file holds. A cut that removes one language or one category unevenly changes what the model
# learns; raising `max_length`, or shortening those answers, is the fix.

# %% [markdown]
# ## 6 · Unpairing for KTO
# KTO (Kahneman–Tversky Optimization) learns from *unpaired* rows: a prompt, one completion, and a label
# (desirable or not). Every pair gives two such rows, its chosen answer labelled desirable and its rejected one
# undesirable. The kit also has natively unpaired rows, about one desirable for three undesirable
# (`UNPAIRED_PATH`; with `None`, KTO learns from the unpaired pairs alone).

# %%
# NBVAL_CHECK_OUTPUT
from helpers.kto import unpair_preferences

derived = {split: unpair_preferences(part) for split, part in pair_splits.items()}
for split in ("train", "test"):
    native_labels = dict(Counter(native_splits[split]["label"])) if native is not None else "none"
    print(f"{split:5} from pairs {dict(Counter(derived[split]['label']))}, native {native_labels}")

# %% [markdown]
# KTO's batches are consecutive rows (its sampler is sequential), so the order of this file *is* the batch
# composition. Do batches need both labels? Not for KTO to work: its reference point is estimated from the other
# completions of the same batch **whatever their labels** (TRL pairs each prompt with its neighbour's completion,
# `kto_trainer.py`, `add_kl_completion_ids`). But a batch of only desirable rows pushes every completion up, and
# the next batch of only undesirable rows pushes them all down: noisier updates, and each batch's log lacks one
# label's reward. TRL's own `unpair_preference_dataset` writes all chosen rows first, then all rejected ones, so
# whole batches hold a single label. `mix_unpaired` interleaves the labels (stratified, deterministic for `SEED`)
# so that every batch of `kto_batch_size` rows holds both when the counts allow it, and warns with the reason
# when they do not.

# %%
from trl.data_utils import unpair_preference_dataset
from helpers.kto import batches_with_both_labels

trl_order = unpair_preference_dataset(pair_splits["train"])
print("TRL's order: (batches with both labels, batches) =",
      batches_with_both_labels(trl_order, profile.kto_batch_size))

# %%
# NBVAL_CHECK_OUTPUT
from helpers.kto import mix_unpaired

unpaired = {split: mix_unpaired(derived[split], native_splits[split], profile.kto_batch_size, SEED)
            for split in ("train", "test")}
print("mix_unpaired: (batches with both labels, batches) =",
      batches_with_both_labels(unpaired["train"], profile.kto_batch_size))

# %% [markdown]
# **Class weights.** With more undesirable than desirable rows, KTO's paper (Eq. 8) asks for weights with
# $\lambda_D n_D / (\lambda_U n_U) \in [1, 4/3]$. `kto_class_weights` keeps one weight at 1.0 and sets the other
# so the ratio sits in the middle of that band (7/6); notebook 05 passes them to `KTOConfig`.

# %%
# NBVAL_CHECK_OUTPUT
from helpers.kto import kto_class_weights

n_desirable = sum(unpaired["train"]["label"])
n_undesirable = len(unpaired["train"]) - n_desirable
desirable_weight, undesirable_weight = kto_class_weights(n_desirable, n_undesirable)
ratio = desirable_weight * n_desirable / (undesirable_weight * n_undesirable)
print(f"n_D={n_desirable}, n_U={n_undesirable}: desirable_weight={desirable_weight}, "
      f"undesirable_weight={undesirable_weight} -> ratio {ratio:.3f} (target band [1, 1.333])")

# %%
from datasets import concatenate_datasets
from helpers.audit import audit_unpaired
from helpers.plots import plot_label_balance

kto_audit = audit_unpaired(unpaired["train"], tokenizer, profile.max_length)
print(f"KTO rows whose prompt alone reaches max_length (TRL drops them): "
      f"{kto_audit['prompt_over_max_length']}; rows truncated on the right: {kto_audit['truncated']}")
figures["label_balance"] = plot_label_balance(concatenate_datasets([unpaired["train"], unpaired["test"]]))
figures["label_balance"]

# %% [markdown]
# ## 7 · Write the run's data
# Everything the later notebooks read goes to `RUN_DIR/data/`, in TRL's conversational format, and the
# numbers to `RUN_DIR/metrics/01_prepare_data.json`.

# %%
from helpers.data import write_jsonl

outputs = {"train.jsonl": pair_splits["train"], "test.jsonl": pair_splits["test"],
           "unpaired_train.jsonl": unpaired["train"], "unpaired_test.jsonl": unpaired["test"]}
for name, rows in outputs.items():
    print(f"{write_jsonl(rows, data_dir / name)}: {len(rows)} rows")
figure_paths = {name: str(save_figure(fig, run_dir, f"01_{name}")) for name, fig in figures.items()}
data_report = {"pairs": pairs_report, "unpaired": native_report, "figures": figure_paths,
               "kto_weights": {"desirable": desirable_weight, "undesirable": undesirable_weight},
               "audit": {k: v for k, v in audit.items() if k != "lengths"},
               "kto_audit": {k: v for k, v in kto_audit.items() if k != "lengths"}}
report_text = json.dumps(data_report, indent=2, ensure_ascii=False)
(data_dir / "data_report.json").write_text(report_text, "utf-8")
print(sorted(p.name for p in data_dir.iterdir()))

# %%
from helpers import save_metrics

counts = ("read", "kept", "dropped", "dropped_by_reason")
labels = {split: Counter(unpaired[split]["label"]) for split in ("train", "test")}
metrics = {**{k: pairs_report[k] for k in counts},
           **{f"unpaired_{k}": (native_report or {}).get(k, 0) for k in counts}}
metrics.update({k: audit[k] for k in ("max_length", "over_max_length", "identical_after_truncation",
                                      "suggested_max_length")})
metrics.update(train_pairs=len(pair_splits["train"]), test_pairs=len(pair_splits["test"]),
               unpaired_desirable=labels["train"][True], unpaired_undesirable=labels["train"][False],
               unpaired_test_desirable=labels["test"][True], unpaired_test_undesirable=labels["test"][False],
               kto_prompt_over_max_length=kto_audit["prompt_over_max_length"],
               kto_batch_size=profile.kto_batch_size, kto_weights=[desirable_weight, undesirable_weight],
               batches_with_both_labels=batches_with_both_labels(unpaired["train"], profile.kto_batch_size),
               figures=figure_paths, seconds=round(time.perf_counter() - start, 1))
print(save_metrics(run_dir, "01_prepare_data", metrics))

# %% [markdown]
# ## What you have now
# - `RUN_DIR/data/train.jsonl`, `test.jsonl`: the checked pairs in TRL's conversational format;
# - `RUN_DIR/data/unpaired_train.jsonl`, `unpaired_test.jsonl`: KTO rows, both labels in every training batch;
# - `RUN_DIR/data/rejected.jsonl` (and `rejected_unpaired.jsonl`): every dropped row with file, line and reason;
# - `RUN_DIR/data/data_report.json`, `RUN_DIR/metrics/01_prepare_data.json`, and the figures in `RUN_DIR/figures/`.
#
# ## Next
# [02 · Train the reward model](02_train_reward_model.ipynb): an 8-bit base with LoRA, `RewardConfig` and
# `RewardTrainer`, trained on these pairs.
