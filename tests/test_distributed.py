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
import torch
import yaml
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from helpers.configs import ACCELERATE_CHOICES, export_trl_configs
from helpers.data import write_jsonl
from helpers.env import kit_subprocess_env
from helpers.merge import MODEL_FILES
from helpers.profiles import get_profile
from helpers.score import RewardScorer, pairwise_accuracy
from helpers.verify import verify_reward_model

HUNG_AFTER_SAVE = "hung after saving"


def _run_until_saved(cmd: list[str], log_path: Path, timeout: float = 900, grace: float = 30, cwd=None) -> tuple:
    """Run `cmd` to its end; returns (exit code, output).

    A gloo process group can hang in its destructor when the interpreter exits, after training is over and
    the model is saved (pytorch/pytorch#75097; seen once here, in one of several runs). What this test checks is
    the training and the saved model, so a process still alive `grace` seconds after TRL printed "Model
    saved" is stopped and reported as HUNG_AFTER_SAVE (with a warning) instead of being waited out.
    """
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd,
                                env=kit_subprocess_env())
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
    assert reward["pad_token"] == "<|finetune_right_pad_id|>" and (run_dir / reward["chat_template_path"]).exists()
    assert sorted(p.name for p in (run_dir / reward["dataset_name"]).iterdir()) == ["test.jsonl", "train.jsonl"]
    assert kto["lora_task_type"] == "CAUSAL_LM" and kto["desirable_weight"] == 1.4 and kto["beta"] == 0.1
    assert kto["gradient_accumulation_steps"] == profile.gradient_accumulation_steps  # notebook 05 passes it too
    assert set(ACCELERATE_CHOICES) == {"multi_gpu", "zero2", "zero3", "fsdp2"}


@pytest.mark.parametrize(("dtype", "flags"), [("fp16", (False, True, "float16")), ("bf16", (True, False, "bfloat16"))])
def test_exported_configs_follow_the_dtype_policy(run_dir, dtype, flags):
    """A T4 needs fp16: the exported files take the notebooks' dtype policy, not a hard-coded bf16."""
    paths = export_trl_configs(get_profile("tiny"), run_dir, dtype=dtype)
    for path in paths.values():
        config = yaml.safe_load(path.read_text())
        assert (config["bf16"], config["fp16"], config["dtype"]) == flags
        assert f"dtype policy {dtype!r}" in path.read_text()


@pytest.mark.parametrize("checkpointing", [True, False])
def test_exported_configs_checkpoint_reentrant_like_the_notebooks(run_dir, checkpointing):
    """transformers 5.23 checkpoints non-reentrant by default: notebook 02's step then peaked at 31.2 GiB, not 12.8."""
    import dataclasses

    profile = dataclasses.replace(get_profile("tiny"), gradient_checkpointing=checkpointing)
    for path in export_trl_configs(profile, run_dir).values():
        config = yaml.safe_load(path.read_text())
        assert config["gradient_checkpointing"] is checkpointing
        assert config.get("gradient_checkpointing_kwargs") == ({"use_reentrant": True} if checkpointing else None)


def test_exported_configs_name_no_machine_path_and_their_launcher(run_dir):
    paths = export_trl_configs(get_profile("tiny"), run_dir)
    for name, path in paths.items():
        text = path.read_text()
        assert str(run_dir) not in text and str(run_dir.resolve()) not in text, text
        assert f"python -m helpers.trl_launch {name} --config configs/{name}.yaml" in text  # what keeps fp32
        config = yaml.safe_load(text)
        assert (run_dir / config["dataset_name"]).is_dir()
        assert config["output_dir"] == {"reward": "rm_adapter_cli", "kto": "kto_adapter_cli"}[name]
    reward = yaml.safe_load(paths["reward"].read_text())
    assert reward["model_name_or_path"] == "models/tiny-llama3" and (run_dir / reward["chat_template_path"]).exists()


def test_launcher_builds_trls_trainer_with_the_notebooks_fp32_adapters(run_dir, monkeypatch):
    """TRL casts a quantized model's LoRA and head to bf16 and its CLI cannot undo it; the launcher does, as 02 does."""
    from helpers.trl_launch import build_trainer

    export_trl_configs(get_profile("tiny"), run_dir, dtype="bf16")
    monkeypatch.chdir(run_dir)
    trainer, stored_before = build_trainer("reward", ["--config", "configs/reward.yaml", "--max_steps", "1"])
    trainable = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    assert set(stored_before) == {"torch.bfloat16"} and trainable == {torch.float32}  # TRL's cast, then undone
    assert trainer.args.bf16 and trainer.args.max_steps == 1
    assert trainer.model.base_model.model.score.modules_to_save["default"].weight.dtype == torch.float32


def test_launcher_refuses_to_run_outside_the_run_folder(run_dir, tmp_path, monkeypatch):
    from helpers.env import KitError
    from helpers.trl_launch import build_trainer

    export_trl_configs(get_profile("tiny"), run_dir)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KitError, match=r"configs/reward_data.*relative to the run folder.*cd "):
        build_trainer("reward", ["--config", str(run_dir / "configs" / "reward.yaml")])


def test_launcher_hands_several_processes_to_accelerate_as_trl_does(run_dir, monkeypatch):
    import helpers.trl_launch as launch

    export_trl_configs(get_profile("tiny"), run_dir)
    seen = []
    monkeypatch.setattr(launch, "_accelerate", lambda launch_args, script_args: seen.append((launch_args, script_args)))
    config = str(run_dir / "configs" / "reward.yaml")
    launch.main(["reward", "--config", config, "--accelerate_config", "multi_gpu", "--num_processes", "2",
                 "--num_train_epochs", "1"])
    [(launch_args, script_args)] = seen
    assert launch_args[0] == "--config_file" and launch_args[1].endswith("multi_gpu.yaml")
    assert launch_args[2:] == ["--num_processes", "2"]
    assert script_args == ["reward", "--config", config, "--num_train_epochs", "1"]


def test_two_process_training_passes_verify_and_scoring(run_dir, kit_pairs):
    """The exported file, run as its header says (from the run folder, through the launcher), on 2 processes."""
    export_trl_configs(get_profile("tiny"), run_dir)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "helpers.trl_launch",
           "reward", "--config", "configs/reward.yaml", "--ddp_backend", "gloo", "--num_train_epochs", "1",
           "--eval_strategy", "no"]
    returncode, log = _run_until_saved(cmd, run_dir / "torchrun.log", cwd=run_dir)
    assert returncode in (0, HUNG_AFTER_SAVE), log[-3000:]
    # 244 pairs fit max_length; split over 2 processes at 8 per device: 16 steps an epoch (1 process: 31)
    assert "| 16/16 [" in log and "| 31/31 [" not in log, "expected 2 processes sharing the data"
    assert "now all fp32" in log
    adapter = run_dir / "rm_adapter_cli"
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}  # trained and saved as notebook 02 does
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
