"""The hand-over to TRL's own tooling: exported configs, a real 2-process (gloo) run, then the kit's verifier
and scorer on what it produced."""

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import trl
import yaml
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from helpers.configs import ACCELERATE_CHOICES, export_trl_configs
from helpers.data import write_jsonl
from helpers.merge import MODEL_FILES
from helpers.profiles import get_profile
from helpers.score import RewardScorer, pairwise_accuracy
from helpers.verify import verify_reward_model

REWARD_SCRIPT = Path(trl.__file__).parent / "scripts" / "reward.py"


HUNG_AFTER_SAVE = "hung after saving"


def _run_until_saved(cmd: list[str], log_path: Path, timeout: float = 900, grace: float = 30) -> tuple:
    """Run `cmd` to its end; returns (exit code, output).

    A gloo process group can hang in its destructor when the interpreter exits, after training is over and
    the model is saved (pytorch/pytorch#75097; seen once here, in one of several runs). What this test checks is
    the training and the saved model, so a process still alive `grace` seconds after TRL printed "Model
    saved" is stopped and reported as HUNG_AFTER_SAVE (with a warning) instead of being waited out.
    """
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    start, saved_at = time.monotonic(), None
    while proc.poll() is None:
        if saved_at is None and "Model saved to" in log_path.read_text(errors="replace"):
            saved_at = time.monotonic()
        late = time.monotonic() - start > timeout or (saved_at and time.monotonic() - saved_at > grace)
        if late:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if saved_at is None:
                pytest.fail(f"torchrun ran past {timeout} s without saving:\n{log_path.read_text()[-3000:]}")
            warnings.warn(f"torchrun saved the model but did not exit within {grace} s (gloo teardown hang, "
                          "pytorch/pytorch#75097); stopped it", stacklevel=2)
            return HUNG_AFTER_SAVE, log_path.read_text(errors="replace")
        time.sleep(1)
    return proc.returncode, log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def run_dir(tiny_rm_base, kit_pairs, tmp_path_factory):
    run = tmp_path_factory.mktemp("dist") / "run"
    shutil.copytree(tiny_rm_base, run / "models" / "tiny-llama3")
    for split in ("train", "test"):
        write_jsonl(kit_pairs[split], run / "data" / f"{split}.jsonl")
    write_jsonl([{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant",
                 "content": "hello"}], "label": True}], run / "data" / "unpaired_train.jsonl")
    shutil.copyfile(run / "data" / "unpaired_train.jsonl", run / "data" / "unpaired_test.jsonl")
    return run


def test_exported_configs_carry_the_notebook_recipe(run_dir):
    profile = get_profile("tiny")
    paths = export_trl_configs(profile, run_dir, seed=3, kto_weights=(1.4, 1.0))
    reward, kto = (yaml.safe_load(paths[k].read_text()) for k in ("reward", "kto"))
    assert reward["lora_task_type"] == "SEQ_CLS" and reward["load_in_8bit"] and reward["use_peft"]
    assert (reward["lora_r"], reward["learning_rate"], reward["max_length"]) == (16, 2e-3, 256)
    assert reward["pad_token"] == "<|finetune_right_pad_id|>" and Path(reward["chat_template_path"]).exists()
    assert sorted(p.name for p in Path(reward["dataset_name"]).iterdir()) == ["test.jsonl", "train.jsonl"]
    assert kto["lora_task_type"] == "CAUSAL_LM" and kto["desirable_weight"] == 1.4 and kto["beta"] == 0.1
    assert set(ACCELERATE_CHOICES) == {"multi_gpu", "zero2", "zero3", "fsdp2"}


def test_two_process_training_passes_verify_and_scoring(run_dir, kit_pairs):
    config = export_trl_configs(get_profile("tiny"), run_dir)["reward"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(REWARD_SCRIPT),
           "--config", str(config), "--ddp_backend", "gloo", "--num_train_epochs", "1", "--eval_strategy", "no"]
    returncode, log = _run_until_saved(cmd, run_dir / "torchrun.log")
    assert returncode in (0, HUNG_AFTER_SAVE), log[-3000:]
    # 244 pairs fit max_length; split over 2 processes at 8 per device: 16 steps an epoch (1 process: 31)
    assert "| 16/16 [" in log and "| 31/31 [" not in log, "expected 2 processes sharing the data"
    adapter = run_dir / "rm_adapter_cli"
    base = AutoModelForSequenceClassification.from_pretrained(run_dir / "models" / "tiny-llama3", num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    base.config.pad_token_id = tokenizer.pad_token_id
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    out = run_dir / "rm_merged_cli"
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    test = kit_pairs["test"]
    report = verify_reward_model(out, [row["prompt"] + row["chosen"] for row in test.select(range(4))],
                                 adapter_dir=adapter, required=MODEL_FILES)
    assert report["ok"] and report["missing_keys"] == [] and report["head_shape"] == [1, 128]
    scorer = RewardScorer.from_pretrained(out, device="cpu")
    rewards = scorer.score_batch([(r["prompt"], r[s]) for r in test for s in ("chosen", "rejected")])
    assert pairwise_accuracy(rewards[0::2], rewards[1::2]) >= 0.65  # two processes, 1 epoch: it learned
