import json
import re

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from helpers.score import RewardScorer, mean_margin, pairwise_accuracy, spearman
from helpers.score_cli import main as score_cli
from helpers.tiny import save_random_head_reward_model

PROMPT = "什么是人工智能?"
ANSWERS = ["人工智能是让计算机完成通常需要人类智能的任务的技术。", "I don't know.",
           "Artificial intelligence is the field of building systems that learn, reason and act.",
           "AI.", "It is a kind of database."]


@pytest.fixture(scope="module")
def rm_dir(tiny_rm_base, tmp_path_factory):
    """A reward-model directory with a saved (random but fixed) head, as notebook 03 writes one."""
    path = save_random_head_reward_model(tiny_rm_base, tmp_path_factory.mktemp("rm") / "rm_merged", seed=0)
    (path / "reward_head.json").write_text(json.dumps({"normalization": {"mean": 0.5, "std": 2.0}}))
    return path


@pytest.fixture(scope="module")
def scorer(rm_dir):
    return RewardScorer.from_pretrained(rm_dir, device="cpu")


def test_batched_equals_single_in_input_order(scorer):
    items = [(PROMPT, a) for a in ANSWERS] * 3
    single = np.array([scorer.score(p, r) for p, r in items])
    batched = scorer.score_batch(items, batch_size=4)
    assert np.abs(single - batched).max() <= 1e-4
    assert len(set(np.round(batched[:5], 4))) == 5  # different answers, different rewards, kept in order


def test_left_and_right_padding_agree(scorer):
    items = [(PROMPT, a) for a in ANSWERS]
    right = scorer.score_batch(items, padding_side="right")
    left = scorer.score_batch(items, padding_side="left")
    assert np.abs(right - left).max() <= 1e-4


def test_pad_equal_to_eos_reads_the_wrong_token(scorer, rm_dir):
    """The pitfall: pad = <|eot_id|> (LLaMA-3 Instruct's EOS) makes the final turn end look like padding."""
    tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    ids = scorer._ids(PROMPT, ANSWERS[0])
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert ids[-1] == eot  # the chat template ends every turn with <|eot_id|>
    right = scorer.score(PROMPT, ANSWERS[0])
    model = scorer.model
    model.config.pad_token_id = eot
    try:
        with torch.no_grad():
            wrong = model(input_ids=torch.tensor([ids])).logits.item()
    finally:
        model.config.pad_token_id = scorer.tokenizer.pad_token_id
    assert abs(wrong - right) > 1e-3
    tokenizer.pad_token = tokenizer.eos_token
    with pytest.raises(ValueError, match="equals EOS"):
        RewardScorer(model, tokenizer)


def test_base_model_without_a_head_is_refused(tiny_rm_base):
    with pytest.raises(ValueError, match=r"no trained reward head.*newly initialised"):
        RewardScorer.from_pretrained(tiny_rm_base, device="cpu")


def test_compare_best_of_n_and_normalisation(scorer):
    rewards = scorer.score_batch([(PROMPT, a) for a in ANSWERS])
    p = scorer.compare(PROMPT, ANSWERS[0], ANSWERS[1])
    assert p == pytest.approx(1 / (1 + np.exp(-(rewards[0] - rewards[1]))), abs=1e-5)
    best = scorer.best_of_n(PROMPT, ANSWERS)
    assert best["index"] == int(np.argmax(rewards)) and best["best"] == ANSWERS[best["index"]]
    assert (scorer.mean, scorer.std) == (0.5, 2.0)
    assert scorer.score(PROMPT, ANSWERS[2], normalized=True) == pytest.approx((rewards[2] - 0.5) / 2.0, abs=1e-4)


def test_messages_and_strings_score_the_same(scorer):
    as_messages = scorer.score([{"role": "user", "content": PROMPT}], [{"role": "assistant", "content": ANSWERS[0]}])
    assert as_messages == pytest.approx(scorer.score(PROMPT, ANSWERS[0]), abs=1e-6)


def test_truncation_is_counted(rm_dir):
    short = RewardScorer.from_pretrained(rm_dir, device="cpu", max_length=8)
    short.score_batch([(PROMPT, a) for a in ANSWERS])
    assert short.truncated == len(ANSWERS)


def test_metric_helpers():
    assert pairwise_accuracy([2, 1, 0], [1, 2, -1]) == pytest.approx(2 / 3)
    assert mean_margin([2, 1], [1, 2]) == 0
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_cli_skips_bad_lines_by_number_and_resumes(rm_dir, tmp_path, capsys):
    lines = [json.dumps({"id": "a", "prompt": PROMPT, "response": ANSWERS[0]}), "{not json",
             json.dumps({"id": "b", "prompt": PROMPT}), json.dumps({"id": "c", "prompt": "Hi", "response": "  "}),
             json.dumps({"id": "d", "prompt": "Hi", "response": 42}),
             json.dumps({"id": "e", "prompt": [{"role": "user", "content": "Hi"}], "response": "Hello!"})]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n")
    assert score_cli(["--model", str(rm_dir), "--input", str(src), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    rows = sorted((json.loads(x) for x in out.read_text().splitlines()), key=lambda r: r["line"])
    assert [r["id"] for r in rows] == ["a", "e"] and [r["line"] for r in rows] == [1, 6]
    for line, reason in [(2, "malformed JSON"), (3, "'response': missing"), (4, "empty text"),
                         (5, "expected a string or a list of messages"), (7, "undecodable bytes")]:
        assert f"in.jsonl:{line}: skipped: " in captured.err and reason in captured.err
    assert "read 7 rows: scored 2, already scored 0, skipped 5 bad" in captured.out
    assert score_cli(["--model", str(rm_dir), "--input", str(src), "--output", str(out)]) == 0
    assert "scored 0, already scored 2" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 2


def test_cli_fails_only_when_nothing_can_be_scored(rm_dir, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text("{oops\n[]\n")
    assert score_cli(["--model", str(rm_dir), "--input", str(src), "--output", str(tmp_path / "o.jsonl")]) == 1


@pytest.mark.parametrize(("case", "match"), [
    ("batch_size_negative", r"--batch-size must be at least 1, got -1"),
    ("batch_size_zero", r"--batch-size must be at least 1, got 0"),
    ("output_is_input", r"--output is the input file"),
    ("output_is_a_folder", r"--output .*x\.jsonl is a folder"),
    ("input_missing", r"--input .*missing\.jsonl: no such file"),
    ("model_missing", r"--model .*no_model: no such folder"),
    ("model_empty", r"--model .*empty_model: not a merged reward model \(no config\.json\)"),
    ("output_folder_not_writable", r"--output: cannot write in .*a_file"),
    ("model_pickle_only", r"--model .*model: the reward model weights are only PyTorch pickle files"),
])
def test_cli_checks_every_argument_before_loading_the_model(tmp_path, capsys, monkeypatch, case, match):
    import helpers.score as score_module

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(score_module.RewardScorer, "from_pretrained", classmethod(no_load))
    src, model = tmp_path / "in.jsonl", tmp_path / "model"
    src.write_text(json.dumps({"prompt": "Hi", "response": "Hello!"}) + "\n")
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"],
                                                   "num_labels": 1}))
    args = {"--model": str(model), "--input": str(src), "--output": str(tmp_path / "out.jsonl"), "--batch-size": "4"}
    if case.startswith("batch_size"):
        args["--batch-size"] = "-1" if case.endswith("negative") else "0"
    elif case == "output_is_input":
        args["--output"] = str(tmp_path / "." / "in.jsonl")
    elif case == "output_is_a_folder":
        (tmp_path / "x.jsonl").mkdir()
        args["--output"] = str(tmp_path / "x.jsonl")
    elif case == "input_missing":
        args["--input"] = str(tmp_path / "missing.jsonl")
    elif case == "model_missing":
        args["--model"] = str(tmp_path / "no_model")
    elif case == "model_empty":
        (tmp_path / "empty_model").mkdir()
        args["--model"] = str(tmp_path / "empty_model")
    elif case == "model_pickle_only":
        (model / "pytorch_model.bin").write_bytes(b"not unpickled")
    else:  # a folder that cannot be created (a file is in the way): unwritable even for root
        (tmp_path / "a_file").write_text("x")
        args["--output"] = str(tmp_path / "a_file" / "out.jsonl")
    assert score_cli([x for kv in args.items() for x in kv]) == 2
    assert re.search(match, capsys.readouterr().err), case
    assert src.read_text().count("\n") == 1  # the input is never written to
