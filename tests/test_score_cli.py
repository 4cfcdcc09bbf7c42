"""The scoring CLI (issue 23): rows that fail only in the tokenizer or on write, an output from another input, errors
that are not write errors, truncation of long inputs, and a writability probe that follows no symlink."""

import errno
import json
import os
import pathlib
import time

import pytest
from test_score import ANSWERS, PROMPT, rm_dir  # noqa: F401  (the module-scoped reward-model folder fixture)

import helpers.score_cli as cli
from helpers.score import RewardScorer


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _good(n, start=0):
    return [{"id": f"g{i}", "prompt": PROMPT, "response": ANSWERS[i % len(ANSWERS)]} for i in range(start, start + n)]


def _run(model, src, out, *extra):
    return cli.main(["--model", str(model), "--input", str(src), "--output", str(out), *extra])


def _rows(out):
    return [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]


# 3. one bad row must not kill its batch, the run and every rerun
@pytest.mark.parametrize(("bad", "reason"), [
    ({"id": "x", "prompt": "Hi", "response": [{"content": "x"}]}, "field 'response': message 0 has no 'role'"),
    ({"id": "x", "prompt": "Hi \ud800 there", "response": "Hello"}, "field 'prompt': a lone surrogate"),
    ({"id": "x\udc00", "prompt": "Hi", "response": "Hello"}, "field 'id': a lone surrogate"),
], ids=["message_without_role", "surrogate_in_prompt", "surrogate_in_id"])
def test_a_row_that_breaks_the_template_tokenizer_or_writer_is_skipped(rm_dir, tmp_path, capsys, bad,  # noqa: F811
                                                                       reason):
    src = _write(tmp_path / "in.jsonl", [*_good(3), bad, *_good(3, start=3)])
    out = tmp_path / "out.jsonl"
    assert _run(rm_dir, src, out, "--batch-size", "8") == 0
    captured = capsys.readouterr()
    assert f"in.jsonl:4: skipped: {reason}" in captured.err
    assert "read 7 rows: scored 6, already scored 0, skipped 1 bad" in captured.out
    assert sorted(r["line"] for r in _rows(out)) == [1, 2, 3, 5, 6, 7]
    assert _run(rm_dir, src, out) == 0  # the rerun skips it again and scores nothing
    assert "scored 0, already scored 6, skipped 1 bad" in capsys.readouterr().out


def test_a_row_the_chat_template_refuses_is_skipped_with_the_templates_words(rm_dir, tmp_path, capsys,  # noqa: F811
                                                                            monkeypatch):
    """Any template or tokenizer error on one row (other templates raise on role order, say) skips that row only."""
    from jinja2.exceptions import TemplateError

    real = RewardScorer.tokens

    def tokens(self, prompt, response):
        if prompt == "RAISE":
            raise TemplateError("Conversation roles must alternate user/assistant/user/assistant/...")
        return real(self, prompt, response)

    monkeypatch.setattr(RewardScorer, "tokens", tokens)
    src = _write(tmp_path / "in.jsonl", [*_good(2), {"prompt": "RAISE", "response": "x"}, *_good(2, start=2)])
    out = tmp_path / "out.jsonl"
    assert _run(rm_dir, src, out) == 0
    captured = capsys.readouterr()
    assert ("in.jsonl:3: skipped: the chat template or tokenizer failed (TemplateError: Conversation roles must "
            "alternate") in captured.err
    assert "read 5 rows: scored 4, already scored 0, skipped 1 bad" in captured.out
    assert sorted(r["line"] for r in _rows(out)) == [1, 2, 4, 5]


# 4. an output scored from another input (or model) is not resumed
def test_a_rerun_with_another_input_into_the_same_output_is_refused(rm_dir, tmp_path, capsys):  # noqa: F811
    first, second = _write(tmp_path / "a.jsonl", _good(4)), _write(tmp_path / "b.jsonl", _good(5, start=1))
    out = tmp_path / "out.jsonl"
    assert _run(rm_dir, first, out) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert _run(rm_dir, second, out) == 2
    err = capsys.readouterr().err
    assert f"{out} holds the scores of another input" in err and "a.jsonl" in err and "b.jsonl" in err
    assert out.read_bytes() == before
    moved = first.rename(tmp_path / "moved.jsonl")  # the same content under another name resumes, with a note
    assert _run(rm_dir, moved, out) == 0
    captured = capsys.readouterr()
    assert "scored 0, already scored 4" in captured.out and "same content under another path (input " in captured.err


def test_a_rerun_with_another_model_or_max_length_is_refused(rm_dir, tmp_path, capsys):  # noqa: F811
    """A model retrained in place (the same path, another reward_head.json) is another model; a copy is the same."""
    import shutil

    src, out = _write(tmp_path / "in.jsonl", _good(3)), tmp_path / "out.jsonl"
    model = shutil.copytree(rm_dir, tmp_path / "rm_merged")
    assert _run(model, src, out) == 0
    assert _run(model, src, out, "--max-length", "16") == 2
    assert "holds scores made with max_length None (the model's limit), not 16" in capsys.readouterr().err
    copy = shutil.copytree(model, tmp_path / "copy_of_rm_merged")
    assert _run(copy, src, out) == 0
    assert "scored 0, already scored 3" in capsys.readouterr().out
    (model / "reward_head.json").write_text(json.dumps({"normalization": {"mean": 0.7, "std": 1.5}}))
    before = out.read_bytes()
    assert _run(model, src, out) == 2
    assert f"{out} holds the scores of another model: {model}, not {model} (their config.json or reward_head.json " \
           "differ: retrained" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_an_output_without_its_fingerprint_is_refused_unless_empty(rm_dir, tmp_path, capsys):  # noqa: F811
    src, out = _write(tmp_path / "in.jsonl", _good(3)), tmp_path / "out.jsonl"
    out.write_text(json.dumps({"line": 1, "id": "g0", "reward": 0.1}) + "\n")
    assert _run(rm_dir, src, out) == 2
    assert "out.jsonl.fingerprint.json is missing" in capsys.readouterr().err
    out.write_text("")  # an empty output (created by a run killed before its first row) is simply started
    assert _run(rm_dir, src, out) == 0 and len(_rows(out)) == 3


# 5. errors that are not write errors get their own message
@pytest.fixture(scope="module")
def two_label_dir(tiny_rm_base, tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = tmp_path_factory.mktemp("cls") / "classifier"
    AutoModelForSequenceClassification.from_pretrained(tiny_rm_base, num_labels=2).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_rm_base).save_pretrained(path)
    return path


def _copy_without_weights(rm_dir, dest, cut_config=False):  # noqa: F811
    dest.mkdir()
    for f in rm_dir.iterdir():
        if f.suffix != ".safetensors":
            (dest / f.name).write_bytes(f.read_bytes())
    if cut_config:
        (dest / "model.safetensors").write_bytes((rm_dir / "model.safetensors").read_bytes())
        (dest / "config.json").write_text((rm_dir / "config.json").read_text()[:40])
    return dest


@pytest.mark.parametrize(("case", "match"), [
    ("no_weights", r"--model .*no_weights: no model\.safetensors \(nor model\.safetensors\.index\.json\)"),
    ("cut_config", r"--model .*cut_config: config\.json is not valid JSON \(.*line \d+ column \d+"),
    ("two_labels", r"--model .*classifier: a classifier with 2 labels .*a reward model has exactly one"),
    ("hub_offline", r"--model someone/no-such-reward-model: not a local folder, and not in the Hugging Face cache "
                    r"\(HF_HUB_OFFLINE is set"),
])
def test_model_problems_are_named_before_anything_is_written(rm_dir, two_label_dir, tmp_path, capsys,  # noqa: F811
                                                             monkeypatch, case, match):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # nothing here may reach the network
    model = {"no_weights": lambda: _copy_without_weights(rm_dir, tmp_path / "no_weights"),
             "cut_config": lambda: _copy_without_weights(rm_dir, tmp_path / "cut_config", cut_config=True),
             "two_labels": lambda: two_label_dir, "hub_offline": lambda: "someone/no-such-reward-model"}[case]()
    src, out = _write(tmp_path / "in.jsonl", _good(2)), tmp_path / "out.jsonl"
    start = time.monotonic()
    assert _run(model, src, out) == 2
    err = capsys.readouterr().err
    assert pytest.approx(0, abs=20) == time.monotonic() - start
    import re

    assert re.search(match, err), err
    assert "writing" not in err and not out.exists()


def test_a_model_that_fails_to_load_is_named_and_leaves_no_output(rm_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(rm_dir / "model.safetensors"))

    monkeypatch.setattr(RewardScorer, "from_pretrained", classmethod(broken))
    src, out = _write(tmp_path / "in.jsonl", _good(2)), tmp_path / "out.jsonl"
    assert _run(rm_dir, src, out) == 2
    err = capsys.readouterr().err
    assert f"error: --model {rm_dir}: loading the model failed ([Errno 5] Input/output error" in err, err
    assert not out.exists()


def test_an_unreadable_input_is_named(rm_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    src, out = _write(tmp_path / "in.jsonl", _good(2)), tmp_path / "out.jsonl"
    real_open = pathlib.Path.open

    def open_(self, *args, **kwargs):
        if self == src:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", open_)  # root reads a chmod 000 file, so the refusal is simulated
    assert _run(rm_dir, src, out) == 2
    assert f"error: --input {src}: cannot read it (Permission denied)" in capsys.readouterr().err
    assert not out.exists()


def test_a_read_error_mid_input_is_not_called_a_write_error(rm_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    src, out = _write(tmp_path / "in.jsonl", _good(4)), tmp_path / "out.jsonl"
    real = cli.iter_lines

    def failing(path):
        for number, raw in real(path):
            if number == 3:
                raise OSError(errno.EIO, "Input/output error")
            yield number, raw

    monkeypatch.setattr(cli, "iter_lines", failing)
    assert _run(rm_dir, src, out, "--batch-size", "1") == 3
    err = capsys.readouterr().err
    assert f"error: reading {src} failed after line 2 (Input/output error)" in err and "writing" not in err
    monkeypatch.setattr(cli, "iter_lines", real)
    assert _run(rm_dir, src, out) == 0 and len(_rows(out)) == 4


def test_a_read_only_output_file_is_named(rm_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    src, out = _write(tmp_path / "in.jsonl", _good(2)), tmp_path / "out.jsonl"
    out.write_text("")
    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if str(path) == str(out) and flags & os.O_RDWR:  # root writes a chmod 444 file, so this is simulated
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    assert _run(rm_dir, src, out) == 2
    assert f"error: --output {out}: cannot open it for writing (Permission denied)" in capsys.readouterr().err


# 6. long inputs are truncated to the model's limit (or --max-length), keeping BOS and the end, and counted
def test_long_inputs_are_truncated_to_the_models_positions_and_counted(rm_dir, tmp_path, capsys):  # noqa: F811
    scorer = RewardScorer.from_pretrained(rm_dir, device="cpu")
    long_answer = " ".join(ANSWERS * 150)
    ids = scorer.tokens(PROMPT, long_answer)
    limit = scorer.model.config.max_position_embeddings
    assert len(ids) > limit + 100
    src = _write(tmp_path / "in.jsonl", [{"id": "long", "prompt": PROMPT, "response": long_answer},
                                         {"id": "short", "prompt": PROMPT, "response": ANSWERS[0]}])
    out = tmp_path / "out.jsonl"
    assert _run(rm_dir, src, out) == 0
    assert "skipped 0 bad, truncated 1 (to 1024 tokens)" in capsys.readouterr().out
    rows = {r["id"]: r for r in _rows(out)}
    assert rows["long"]["truncated_tokens"] == len(ids) - limit and rows["short"]["truncated_tokens"] == 0
    kept = [ids[0], *ids[len(ids) - limit + 1:]]  # BOS, then the end: the reward is read at the final <|eot_id|>
    expected = float(scorer._score_ids([kept])[0])
    assert rows["long"]["reward"] == pytest.approx(expected, abs=1e-4)


def test_max_length_option_is_applied_and_checked(rm_dir, tmp_path, capsys):  # noqa: F811
    src, out = _write(tmp_path / "in.jsonl", _good(3)), tmp_path / "out.jsonl"
    assert _run(rm_dir, src, out, "--max-length", "8") == 0
    assert "truncated 3 (to 8 tokens)" in capsys.readouterr().out
    assert all(r["truncated_tokens"] > 0 for r in _rows(out))
    assert _run(rm_dir, src, tmp_path / "o2.jsonl", "--max-length", "5000") == 2
    assert "--max-length 5000 is above the model's max_position_embeddings 1024" in capsys.readouterr().err


# 7. the writability probe follows no planted symlink
def test_the_output_probe_does_not_follow_a_planted_symlink(rm_dir, tmp_path):  # noqa: F811
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / ".out.jsonl.write_test").symlink_to(victim)
    src = _write(tmp_path / "in.jsonl", _good(1))
    assert _run(rm_dir, src, shared / "out.jsonl") == 0
    assert victim.read_text() == "precious"
    assert (shared / ".out.jsonl.write_test").is_symlink()
