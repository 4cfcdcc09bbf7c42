"""The course in a simulated Colab, on CPU: stricter than the plain papermill run (tests/test_course.py).

`make run` executes every notebook in one folder, with the kit pip-installed and one RUN_DIR given as a
parameter. Colab differs in ways that run cannot see, so the simulation reproduces them:

- every notebook is its own runtime: a fresh papermill process and kernel, and a fresh folder standing for
  `/content` (the kernel's working folder, wiped between notebooks); only the "Drive" folder persists;
- parameters stay at their defaults except PROFILE, so RUN_DIR is whatever the notebook picks on Colab;
- `google.colab` is imported at kernel start (tests/colab_stub/: `drive.mount`, `userdata.get`);
- the kit is not installed: a copy of the working tree sits in `<content>/reward-lab`, where the first cell's
  clone would be, and a blocker on PYTHONPATH hides the venv's editable install from every process that does
  not put the clone on sys.path itself (the notebook kernel does; a `python -m helpers...` subprocess does not);
- no GitHub: a `git clone` fails at once (tests/colab_stub/bin/git), HF's cache is on the wiped local disk.

    python tests/colab_sim.py [WORK_DIR]      # the whole course; prints the summary
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUB = Path(__file__).resolve().parent / "colab_stub"
KIT = "reward-lab"  # the folder the notebooks' first cell clones into the working folder
DROPPED_ENV = ("REWARD_LAB_RUN_DIR", "REWARD_LAB_PROFILE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "PYTHONPATH")
STARTUP = """with open({pid_file!r}, "w") as _f:  # the kernel's process group: the simulation ends it with the runtime
    _f.write(str(__import__("os").getpid()))
del _f
# Colab imports google.colab in every kernel before the first cell (no name is bound in the user namespace)
__import__("google.colab")
"""


def kit_files(repo: Path = REPO) -> list[str]:
    """The working tree as the clone would hold it: tracked and untracked-not-ignored files (uncommitted edits too)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, check=True,
                         capture_output=True, text=True).stdout
    return sorted({f for f in out.split("\0") if f and (repo / f).is_file()})


def prepare_runtime(content: Path, drive: Path, runtime: Path) -> dict:
    """A fresh runtime: empty `content` (the simulated /content) and `runtime` (IPython's startup file), the env.

    The env is the kernel's: the stub and blocker on PYTHONPATH, the startup file importing google.colab,
    COLAB_RELEASE_TAG (real Colab sets it), REWARD_LAB_CONTENT (where the kit finds Colab's local disk), HF's cache
    on that disk, no token and no RUN_DIR/PROFILE from this shell, pip kept off the network (the test venv must not
    change), and the Makefile's malloc settings.
    """
    for folder in (content, runtime):
        shutil.rmtree(folder, ignore_errors=True)
    content.mkdir(parents=True)
    drive.mkdir(parents=True, exist_ok=True)
    startup = runtime / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text(STARTUP.format(pid_file=str(runtime / "kernel.pid")))
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(PYTHONPATH=str(STUB), IPYTHONDIR=str(runtime / "ipython"), COLAB_RELEASE_TAG="release-colab-sim",
               REWARD_LAB_CONTENT=str(content), REWARD_LAB_SIM_DRIVE=str(drive),
               HF_HOME=str(content / ".cache" / "huggingface"), GIT_TERMINAL_PROMPT="0",
               TOKENIZERS_PARALLELISM="false", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PATH=os.pathsep.join([str(STUB / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")]))
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "1073741824")
    return env


def copy_kit(files: list[str], dest: Path) -> None:
    """What the first cell's `git clone` would leave in the working folder."""
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)


def tree_bytes(root: Path, skip: frozenset[str] = frozenset()) -> int:
    """Bytes of the files under `root` (symlinks not followed: the Drive mount is not counted in /content)."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.relpath(path, root) not in skip:
                total += os.lstat(path).st_size
    return total


def new_files(content: Path, kit: str, copied: frozenset[str]) -> list[str]:
    """Files the notebook wrote inside the clone (bytecode aside): a RUN_DIR fallback lands there, wiped with it."""
    found = (str(f.relative_to(content)) for f in (content / kit).rglob("*") if "__pycache__" not in f.parts)
    return sorted(name for name in found if name not in copied and (content / name).is_file())


def end_runtime(papermill_pid: int, runtime: Path) -> None:
    """End what the runtime left running (papermill, the kernel, e.g. a `%tensorboard` server), as Colab does.

    The kernel runs in its own process group (jupyter_client starts it in a new session); its pid comes from the
    startup file.
    """
    pid_file = runtime / "kernel.pid"
    kernel = pid_file.read_text().strip() if pid_file.exists() else ""
    for pgid in [papermill_pid] + ([int(kernel)] if kernel.isdigit() else []):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def notebook_error(executed: Path, log: Path) -> str:
    """What stopped the notebook, from its executed copy: `ename: evalue` with the cell's first line and last
    stdout line, else the cell still running when it was stopped, else the end of papermill's log."""
    try:
        cells = json.loads(executed.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        cells = []

    def first_line(cell):
        return ("".join(cell["source"]).strip().splitlines() or [""])[0]

    for cell in cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("name") == "stdout")
                last = f"; printed: {printed.strip().splitlines()[-1]!r}" if printed.strip() else ""
                return f"{out['ename']}: {out['evalue']} (cell {first_line(cell)!r}{last})"
    running = [c for c in cells if c.get("metadata", {}).get("papermill", {}).get("status") == "running"]
    if running:
        return f"stopped while running cell {first_line(running[0])!r}"
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
    return " | ".join(tail) or "no error recorded"


def run_colab_course(work_dir: Path, profile: str = "tiny", notebooks: list[Path] | None = None,
                     keep_content: bool = False, timeout_s: int = 600) -> dict:
    """Run the notebooks in order, each in a fresh simulated Colab runtime; stop at the first failure.

    work_dir holds `drive/` (persists), `content/` (the simulated /content, replaced for every notebook; kept as
    `content-<notebook>` with keep_content), `runtime/` and `executed/` (output notebooks and papermill logs).
    """
    work_dir = Path(work_dir).resolve()
    drive, content, runtime, executed = (work_dir / name for name in ("drive", "content", "runtime", "executed"))
    executed.mkdir(parents=True, exist_ok=True)
    files = kit_files()
    copied = frozenset(f"{KIT}/{name}" for name in files)
    summary = {"drive": str(drive), "run_dir": str(drive / KIT / "runs" / "default"), "profile": profile,
               "notebooks": [], "executed_dir": str(executed)}
    for nb in notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        env = prepare_runtime(content, drive, runtime)
        copy_kit(files, content / KIT)
        out, log = executed / nb.name, executed / f"{nb.stem}.log"
        cmd = [sys.executable, "-m", "papermill", str(nb), str(out), "-p", "PROFILE", profile, "--cwd", str(content),
               "--kernel", "python3", "--no-progress-bar", "--execution-timeout", str(timeout_s)]
        start = time.perf_counter()
        with log.open("w") as log_file:
            proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                ok, stopped = proc.wait(timeout=timeout_s) == 0, ""
            except subprocess.TimeoutExpired:
                ok, stopped = False, f"TimeoutError: ran past {timeout_s} s, "
            finally:
                end_runtime(proc.pid, runtime)
        seconds = round(time.perf_counter() - start, 1)
        entry = {"notebook": nb.name, "status": "ok" if ok else "FAILED", "seconds": seconds,
                 "error": None if ok else stopped + notebook_error(out, log),
                 "content_bytes": tree_bytes(content, copied), "kit_writes": new_files(content, KIT, copied),
                 "log": str(log)}
        summary["notebooks"].append(entry)
        if keep_content:
            shutil.rmtree(work_dir / f"content-{nb.stem}", ignore_errors=True)
            content.rename(work_dir / f"content-{nb.stem}")
        if not ok:
            break
    shutil.rmtree(content, ignore_errors=True)
    summary["drive_bytes"] = tree_bytes(drive)
    (work_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_colab_summary(summary: dict) -> str:
    """A plain-text table of the simulated run, with the failure and where to read more."""
    lines = [f"Colab simulation (profile {summary['profile']}): Drive {summary['drive']} "
             f"({summary.get('drive_bytes', 0) / 2**20:.1f} MiB), RUN_DIR default {summary['run_dir']}",
             f"{'notebook':<34}{'status':<8}{'seconds':>8}{'/content MiB':>14}  written into the clone"]
    for n in summary["notebooks"]:
        writes = ", ".join(n["kit_writes"][:3]) + (" ..." if len(n["kit_writes"]) > 3 else "")
        lines.append(f"{n['notebook']:<34}{n['status']:<8}{n['seconds']:>8}{n['content_bytes'] / 2**20:>14.1f}  "
                     f"{writes or '-'}")
        if n["error"]:
            lines += [f"FAILED in {n['notebook']}: {n['error']}",
                      f"  executed notebook: {summary['executed_dir']}/{n['notebook']}; papermill log: {n['log']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    result = run_colab_course(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/colab-sim"))
    print(format_colab_summary(result))
    sys.exit(0 if all(n["status"] == "ok" for n in result["notebooks"]) else 1)
