import numpy as np
import pytest
import torch
from peft import LoraConfig, prepare_model_for_kbit_training
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig, TrainerCallback
from trl import RewardConfig, RewardTrainer

from helpers.score import pairwise_accuracy, score_pairs, spearman
from helpers.tiny import LLAMA3_CHAT_TEMPLATE, build_tokenizer
from helpers.train import (
    RewardSetupError,
    bradley_terry_loss,
    check_reward_setup,
    check_trainable_fp32,
    check_trainable_pairs,
    keep_trainable_fp32,
    latest_checkpoint,
    prepare_reward_tokenizer,
    split_history,
    trainer_loss_on_batch,
    whole_run_loss,
)

SEQ_CLS = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="SEQ_CLS")


def _load_8bit(path, tokenizer, dtype=torch.bfloat16):
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, quantization_config=BitsAndBytesConfig(load_in_8bit=True), dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def _trainer(path, pairs, out_dir, seed=0, fp32=True, dtype=torch.bfloat16, **overrides):
    tokenizer = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(path))
    torch.manual_seed(seed)
    model = _load_8bit(path, tokenizer, dtype)
    settings = dict(output_dir=str(out_dir), seed=seed, learning_rate=2e-3, per_device_train_batch_size=8,
                    num_train_epochs=2, bf16=True, max_length=256, logging_steps=4, report_to="none",
                    eval_strategy="no", save_strategy="no", gradient_checkpointing=False, disable_tqdm=True,
                    use_cpu=True)
    args = RewardConfig(**{**settings, **overrides})
    trainer = RewardTrainer(model=model, args=args, train_dataset=pairs["train"], processing_class=tokenizer,
                            peft_config=LoraConfig(**SEQ_CLS))
    if fp32:
        keep_trainable_fp32(trainer.model)  # notebook 02 does this right after building the trainer
    return trainer


@pytest.fixture(scope="module")
def trained(tiny_rm_base, kit_pairs, tmp_path_factory):
    trainer = _trainer(tiny_rm_base, kit_pairs, tmp_path_factory.mktemp("rm"), num_train_epochs=1)
    head_before = trainer.model.base_model.model.score.modules_to_save["default"].weight.detach().clone()
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.train()
    return trainer, head_before, batch


def test_training_learns_on_held_out_pairs_with_real_8bit_layers(trained, kit_pairs):
    import bitsandbytes as bnb

    trainer, head_before, _ = trained
    assert sum(isinstance(m, bnb.nn.Linear8bitLt) for m in trainer.model.modules()) >= 28  # 4 layers x 7
    scores = score_pairs(trainer.model, trainer.processing_class, kit_pairs["test"])
    accuracy = pairwise_accuracy(scores["chosen"], scores["rejected"])
    assert len(kit_pairs["test"]) >= 60 and accuracy >= 0.65, accuracy  # chance is 0.5
    head_after = trainer.model.base_model.model.score.modules_to_save["default"].weight
    assert not torch.equal(head_before, head_after.detach()), "the score head must be trained"
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < losses[0]


def test_trainer_loss_is_bradley_terry_by_hand(trained):
    trainer, _, batch = trained
    model = trainer.model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    chosen, rejected = rewards.chunk(2)  # bf16 under autocast, as in training
    by_hand = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
    assert torch.allclose(bradley_terry_loss(chosen, rejected), by_hand)
    assert torch.allclose(trainer_loss_on_batch(trainer, batch), by_hand.float(), atol=1e-6)
    assert trainer._metrics["eval"] == {} or all(not v for v in trainer._metrics["eval"].values())


class _Kill(TrainerCallback):
    """Simulates a disconnect: the process dies at `step`, after the last checkpoint was written."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("disconnected")


def test_resume_after_a_kill_matches_an_uninterrupted_run(tiny_rm_base, kit_pairs, tmp_path):
    few = {"train": kit_pairs["train"].select(range(96))}
    common = dict(max_steps=18, save_strategy="steps", save_steps=8, num_train_epochs=1)  # logging_steps=4
    straight = _trainer(tiny_rm_base, few, tmp_path / "straight", **common)
    straight.train()
    killed = _trainer(tiny_rm_base, few, tmp_path / "resumed", **common)
    killed.add_callback(_Kill(step=10))
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    # a second disconnect in the middle of the next save: adapter files written, trainer_state.json not yet
    cut = tmp_path / "resumed" / "checkpoint-16"
    cut.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        (cut / name).write_bytes((tmp_path / "resumed" / "checkpoint-8" / name).read_bytes())
    checkpoint = latest_checkpoint(tmp_path / "resumed")
    assert checkpoint.endswith("checkpoint-8")  # not the half-written checkpoint-16 (FileNotFoundError there)
    resumed = _trainer(tiny_rm_base, few, tmp_path / "resumed", **common)
    result = resumed.train(resume_from_checkpoint=checkpoint)
    # train_loss of a resumed session covers its own steps only; the logged history covers the whole run
    whole = whole_run_loss(resumed.state.log_history, result.metrics["train_loss"], start_step=8)
    straight_loss = straight.state.log_history[-1]["train_loss"]
    assert abs(whole - straight_loss) < abs(result.metrics["train_loss"] - straight_loss)
    assert abs(whole - straight_loss) < 0.01 < 0.02 < abs(result.metrics["train_loss"] - straight_loss)
    a = score_pairs(straight.model, straight.processing_class, kit_pairs["test"])
    b = score_pairs(resumed.model, resumed.processing_class, kit_pairs["test"])
    # Stated tolerance. Two uninterrupted runs are bit-identical on CPU, but a resumed run can differ by
    # rounding (the bf16 autocast recomputes in another order after the restore), and a tiny random-init
    # network amplifies that in raw scores. What a learner reads must agree: the ranking
    # of held-out answers (Spearman >= 0.98) and pairwise accuracy within one pair.
    both = lambda s: np.concatenate([s["chosen"], s["rejected"]])  # noqa: E731
    assert spearman(both(a), both(b)) >= 0.98
    n = len(kit_pairs["test"])
    acc_a, acc_b = (pairwise_accuracy(x["chosen"], x["rejected"]) for x in (a, b))
    assert abs(acc_a - acc_b) <= 1 / n + 1e-9
    state_a = straight.model.state_dict()
    drift = max((state_a[k].float() - v.float()).abs().max().item()
                for k, v in resumed.model.state_dict().items() if "lora" in k or "modules_to_save" in k)
    assert drift <= 1e-2


def test_prepare_tokenizer_sets_template_and_dedicated_pad():
    tok = build_tokenizer(["hello world"] * 20, "llama3")
    tok.chat_template, tok.pad_token = None, tok.eos_token
    prepare_reward_tokenizer(tok)
    assert tok.chat_template == LLAMA3_CHAT_TEMPLATE
    assert tok.pad_token == "<|finetune_right_pad_id|>" and tok.pad_token_id != tok.eos_token_id


def test_prepare_tokenizer_without_a_pad_candidate_says_how_to_add_one(monkeypatch):
    import helpers.chat

    tok = build_tokenizer(["hello world"] * 20, "chatml")
    tok.pad_token = tok.eos_token
    assert prepare_reward_tokenizer(tok).pad_token == "<|endoftext|>"  # ChatML's own, as SmolLM2's copy uses
    tok.pad_token = tok.eos_token
    monkeypatch.setattr(helpers.chat, "PAD_CANDIDATES", ("<|finetune_right_pad_id|>",))
    with pytest.raises(RewardSetupError, match="No dedicated pad token.*add_special_tokens"):
        prepare_reward_tokenizer(tok)


@pytest.fixture(scope="module")
def base_model(tiny_rm_base):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm_base, num_labels=1)
    model.config.pad_token_id = prepare_reward_tokenizer(AutoTokenizer.from_pretrained(tiny_rm_base)).pad_token_id
    return model


def test_setup_check_accepts_seq_cls_and_modules_to_save(base_model):
    check_reward_setup(base_model, LoraConfig(**SEQ_CLS))
    check_reward_setup(base_model, LoraConfig(r=8, task_type="CAUSAL_LM", modules_to_save=["score"]))


@pytest.mark.parametrize(
    ("change", "lora", "message"),
    [({"num_labels": 2}, None, r"num_labels=2.*num_labels=1"),
     ({"pad_token_id": None}, None, r"pad_token_id is None.*tokenizer.pad_token_id"),
     ({}, LoraConfig(r=8, task_type="CAUSAL_LM"), r"task_type='CAUSAL_LM'.*task_type=\"SEQ_CLS\""),
     ({}, LoraConfig(r=8), r"task_type=None.*SEQ_CLS")],
)
def test_setup_check_rejects_what_would_train_the_wrong_thing(base_model, change, lora, message):
    saved = {k: getattr(base_model.config, k) for k in change}
    for key, value in change.items():
        setattr(base_model.config, key, value)
    try:
        with pytest.raises(RewardSetupError, match=message):
            check_reward_setup(base_model, lora)
    finally:
        for key, value in saved.items():
            setattr(base_model.config, key, value)


def test_empty_after_length_filter_stops_before_training():
    with pytest.raises(RewardSetupError, match=r"All 12 training pairs are longer than max_length=16.*max_length=320"):
        check_trainable_pairs(0, 12, 16, suggested=320)
    with pytest.raises(RewardSetupError, match="run notebook 01"):
        check_trainable_pairs(0, 0, 16)
    check_trainable_pairs(3, 12, 16)


def _checkpoint(folder, step, complete=True):
    path = folder / f"checkpoint-{step}"
    path.mkdir()
    (path / "adapter_model.safetensors").write_bytes(b"")
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_latest_checkpoint_orders_numerically(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (9, 10, 2):
        _checkpoint(tmp_path, step)
    assert latest_checkpoint(tmp_path).endswith("checkpoint-10")


def test_latest_checkpoint_skips_one_cut_off_mid_save_and_says_so(tmp_path, capsys):
    """A disconnect during a save leaves adapter files but no trainer_state.json (the Trainer writes it last)."""
    _checkpoint(tmp_path, 12)
    _checkpoint(tmp_path, 24, complete=False)
    assert latest_checkpoint(tmp_path).endswith("checkpoint-12")
    assert "skipping checkpoint-24: incomplete" in capsys.readouterr().out
    only_broken = tmp_path / "only"
    only_broken.mkdir()
    _checkpoint(only_broken, 6, complete=False)
    assert latest_checkpoint(only_broken) is None


@pytest.mark.parametrize(("state", "why"), [("", "empty"), ('{"global_step": 36, "log_hist', "cut short"),
                                             ("[1, 2]", "not a JSON object")])
def test_latest_checkpoint_skips_one_whose_trainer_state_does_not_parse(tmp_path, capsys, state, why):
    """A full disk or a kill while trainer_state.json is written leaves it empty or cut: resume would fail on it."""
    _checkpoint(tmp_path, 24)
    (_checkpoint(tmp_path, 36) / "trainer_state.json").write_text(state)
    assert latest_checkpoint(tmp_path).endswith("checkpoint-24")
    out = capsys.readouterr().out
    assert f"skipping checkpoint-36: its trainer_state.json is {why}" in out and "resuming from checkpoint-24" in out


def test_whole_run_loss_weights_each_logged_window_by_its_steps():
    logs = [{"loss": 0.7, "step": 4}, {"loss": 0.5, "step": 8}, {"eval_loss": 0.1, "step": 8},
            {"loss": 0.2, "step": 10}, {"train_loss": 0.2, "step": 10}]
    assert whole_run_loss(logs) == pytest.approx((0.7 * 4 + 0.5 * 4 + 0.2 * 2) / 10)
    assert whole_run_loss([]) is None
    # resumed at step 4: the restored window (0, 4] plus this session's mean over steps 5-10
    assert whole_run_loss(logs, session_loss=0.3, start_step=4) == pytest.approx((0.7 * 4 + 0.3 * 6) / 10)


def test_trl_stores_trainables_in_bf16_and_the_kit_restores_fp32(tiny_rm_base, kit_pairs, tmp_path):
    """Pins the upstream cast (if TRL stops doing it, this says so) and the kit's answer to it."""
    trainer = _trainer(tiny_rm_base, kit_pairs, tmp_path, fp32=False)
    dtypes = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    assert dtypes == {torch.bfloat16}
    with pytest.raises(RewardSetupError, match="not fp32.*keep_trainable_fp32"):
        check_trainable_fp32(trainer.model)
    before = keep_trainable_fp32(trainer.model)
    assert set(before) == {"torch.bfloat16"} and sum(before.values()) > 10_000
    check_trainable_fp32(trainer.model)


def test_fp16_policy_trains_with_fp32_trainables_and_the_head_moves(tiny_rm_base, kit_pairs, tmp_path):
    """The T4 path on CPU: fp16 weights and fp16=True. Trainables must be fp32 (the CUDA GradScaler's need)."""
    few = {"train": kit_pairs["train"].select(range(64))}
    common = dict(dtype=torch.float16, bf16=False, fp16=True, max_steps=6, learning_rate=1e-5)
    broken = _trainer(tiny_rm_base, few, tmp_path / "bf16", fp32=False, **common)
    with pytest.raises(RuntimeError, match="same dtype"):  # bf16 adapters under fp16 fail on CPU too
        broken.train()
    trainer = _trainer(tiny_rm_base, few, tmp_path / "fp32", **common)
    check_trainable_fp32(trainer.model)
    head = trainer.model.base_model.model.score.modules_to_save["default"].weight
    start = head.detach().clone()
    trainer.train()
    assert (head.detach() != start).float().mean().item() > 0.9  # at lr 1e-5, every entry moved


def test_split_history_separates_train_and_eval():
    logs = [{"loss": 0.7, "accuracy": 0.5, "step": 4}, {"eval_loss": 0.6, "eval_accuracy": 0.7, "step": 8},
            {"train_runtime": 3.0, "step": 8}]
    curves = split_history(logs)
    assert curves["train"]["loss"] == [0.7] and curves["eval"]["accuracy"] == [0.7]
    assert curves["eval"]["step"] == [8] and "train_runtime" not in curves["train"]


def test_split_history_puts_the_evaluation_before_training_at_step_0():
    """Trainer.train() starts a fresh log, so the pre-training evaluation is passed in and becomes step 0."""
    logs = [{"eval_loss": 0.4, "eval_accuracy": 0.8, "step": 8}]
    curves = split_history(logs, before_training={"eval_loss": 0.69, "eval_accuracy": 0.47, "epoch": 0.0})
    assert curves["eval"]["step"] == [0, 8] and curves["eval"]["accuracy"] == [0.47, 0.8]
