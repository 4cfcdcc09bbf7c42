"""The scoring CLI under faults: SIGKILL mid-run, a cut last line, a full disk, a second writer, a foreign output.

Every case ends the same way: after the reruns, exactly one output row per good input line, with the rewards an
uninterrupted run gives.
"""

import errno
import fcntl
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_score import rm_dir  # noqa: F401  (the module-scoped reward-model folder fixture)

import helpers.score_cli as cli
from helpers.env import kit_subprocess_env

N_GOOD = 160
KILLS = 1  # kill/rerun cycles in the SIGKILL test: each one costs a process start (seconds); raise it to soak
BAD = {5: "{cut", 77: json.dumps({"prompt": "Hi"}), 150: json.dumps({"prompt": "Hi", "response": ""})}


@pytest.fixture(scope="module")
def source(kit_pairs, tmp_path_factory):
    """N_GOOD scorable rows with three bad lines among them; the good lines' numbers."""
    rows = [(r["prompt"][0]["content"], r[side][0]["content"]) for r in kit_pairs["train"] for side in
            ("chosen", "rejected")]
    lines, good, number = [], [], 0
    while len(good) < N_GOOD:
        number += 1
        if number in BAD:
            lines.append(BAD[number])
            continue
        prompt, response = rows[len(good) % len(rows)]
        lines.append(json.dumps({"id": f"r{number}", "prompt": prompt, "response": response}, ensure_ascii=False))
        good.append(number)
    path = tmp_path_factory.mktemp("faults") / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, good


@pytest.fixture(scope="module")
def reference(source, rm_dir, tmp_path_factory):  # noqa: F811
    """Rewards by line of one uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "out.jsonl"
    assert cli.main(["--model", str(rm_dir), "--input", str(source[0]), "--output", str(out)]) == 0
    return {r["line"]: r["reward"] for r in map(json.loads, out.read_text().splitlines())}


def _rows(out):
    return [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]


def _assert_exactly_the_good_rows(out, source, reference):
    rows = _rows(out)
    lines = [r["line"] for r in rows]
    assert sorted(lines) == source[1], f"{len(lines)} rows, {len(set(lines))} distinct, {len(source[1])} good"
    got = np.array([r["reward"] for r in sorted(rows, key=lambda r: r["line"])])
    np.testing.assert_allclose(got, [reference[n] for n in source[1]], atol=1e-5)


def _args(rm_dir, source, out, batch=16):  # noqa: F811
    return ["--model", str(rm_dir), "--input", str(source[0]), "--output", str(out), "--batch-size", str(batch)]


def test_sigkill_mid_run_then_reruns_end_with_exactly_the_good_rows(rm_dir, source, reference, tmp_path,  # noqa: F811
                                                                    capsys):
    """Kill -9 while batches are being written; a second writer meanwhile is refused; the rerun finishes."""
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "helpers.score_cli", *_args(rm_dir, source, out, batch=2)]
    for kill in range(KILLS):
        before = out.stat().st_size if out.exists() else 0
        proc = subprocess.Popen(command, env=kit_subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while (not out.exists() or out.stat().st_size < before + 2000) and proc.poll() is None:
            assert time.monotonic() < deadline, "the CLI wrote nothing in 120 s"
            time.sleep(0.005)
        if kill == 0:  # while it writes, a second run on the same output is refused and changes nothing
            assert cli.main(_args(rm_dir, source, out)) == 2
            assert "another run is writing to" in capsys.readouterr().err
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        assert 0 < len(_rows_lenient(out)) < N_GOOD, "the kill landed after the run had finished"
    assert cli.main(_args(rm_dir, source, out)) == 0
    _assert_exactly_the_good_rows(out, source, reference)
    assert cli.main(_args(rm_dir, source, out)) == 0  # a further rerun scores nothing and writes nothing
    assert f"scored 0, already scored {N_GOOD}" in capsys.readouterr().out
    _assert_exactly_the_good_rows(out, source, reference)


def _rows_lenient(out):
    return [x for x in out.read_bytes().split(b"\n") if x.endswith(b"}")]


def test_cut_last_line_is_removed_and_its_row_rescored(rm_dir, source, reference, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out.jsonl"
    assert cli.main(_args(rm_dir, source, out)) == 0
    data = out.read_bytes()
    out.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 20])  # the last row cut after 19 bytes
    assert cli.main(_args(rm_dir, source, out)) == 0
    captured = capsys.readouterr()
    assert "removed a last line cut by an interrupted run" in captured.err
    assert f"scored 1, already scored {N_GOOD - 1}" in captured.out
    _assert_exactly_the_good_rows(out, source, reference)


def test_full_disk_mid_write_exits_3_and_a_rerun_completes(rm_dir, source, reference, tmp_path, capsys,  # noqa: F811
                                                           monkeypatch):
    out, real_append, calls = tmp_path / "out.jsonl", cli._append, []

    def append_until_the_disk_fills(handle, records):
        calls.append(1)
        if len(calls) == 4:  # the fourth batch: half its bytes land, then ENOSPC
            block = "".join(json.dumps(r) + "\n" for r in records).encode()
            handle.write(block[: len(block) // 2])
            handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(handle, records)

    monkeypatch.setattr(cli, "_append", append_until_the_disk_fills)
    assert cli.main(_args(rm_dir, source, out)) == 3
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.setattr(cli, "_append", real_append)
    assert cli.main(_args(rm_dir, source, out)) == 0
    assert "removed a last line cut" in capsys.readouterr().err
    _assert_exactly_the_good_rows(out, source, reference)


def test_a_held_lock_refuses_the_run_and_leaves_the_output_alone(rm_dir, source, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"line": 1, "reward": 0.5}) + "\n")
    with open(out, "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        assert cli.main(_args(rm_dir, source, out)) == 2
    assert "another run is writing to" in capsys.readouterr().err
    assert len(_rows(out)) == 1


def test_an_output_that_is_not_a_score_file_is_refused(rm_dir, source, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "notes.jsonl"
    out.write_text(json.dumps({"prompt": "mine"}) + "\n")
    assert cli.main(_args(rm_dir, source, out)) == 2
    assert "notes.jsonl:1 is not a score row of this tool" in capsys.readouterr().err
    assert out.read_text().count("\n") == 1


def test_line_set_marks_each_line_once():
    done = cli.LineSet()
    assert done.add(200_000) and not done.add(200_000) and 200_000 in done and 199_999 not in done
    assert len(done.bits) == 200_000 // 8 + 1
