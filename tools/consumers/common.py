"""Shared by the per-consumer scripts. Standard library only: each script runs inside its consumer's own venv.

A script is run as `python score_<name>.py --model DIR --probes probes.json --out result.json`. It scores the
probes with the consumer's own loading and scoring code and writes, for each variant it tries (a dtype, a flag),
the rewards or the error. The driver (run.py) compares them with the kit's RewardScorer.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.metadata
import json
import sys
import time
import traceback
import types


class Run:
    """The probes, the model folder and the result being written."""

    def __init__(self, consumer: str, packages: list[str]):
        parser = argparse.ArgumentParser(description=f"score the probes with {consumer}")
        parser.add_argument("--model", required=True, help="merged reward model folder (notebook 03's rm_merged)")
        parser.add_argument("--probes", required=True, help="probes JSON written by run.py")
        parser.add_argument("--out", required=True, help="result JSON to write")
        args = parser.parse_args()
        self.model, self.out = args.model, args.out
        self.probes = json.loads(open(args.probes, encoding="utf-8").read())
        self.result = {"consumer": consumer, "versions": versions(packages), "variants": [], "notes": []}

    def conversations(self) -> list[list[dict]]:
        """Each probe as one message list: prompt messages then response messages."""
        return [p["prompt"] + p["response"] for p in self.probes]

    def check_ids(self, ids: list[list[int]], label: str = "token ids") -> None:
        """Note how many probes this consumer tokenizes differently from the kit (which ones, by probe id)."""
        differ = [p["id"] for p, got in zip(self.probes, ids, strict=True) if list(got) != p["kit_ids"]]
        self.note(f"{label}: {len(self.probes) - len(differ)}/{len(self.probes)} probes identical to the kit's"
                  + (f" (differ: {', '.join(differ)})" if differ else ""))

    def note(self, text: str) -> None:
        self.result["notes"].append(text)

    def variant(self, name: str, fn, gate: bool = True, expect: str = "raw", exclude: tuple = (), note: str = ""):
        """Run `fn()` -> list of rewards (probe order) and record it; an exception is recorded, not raised.

        gate: the driver fails when this variant is off by more than the tolerance (else it is only reported).
        expect: "raw" (compare with the kit's rewards) or "normalized" ((reward - mean) / std).
        exclude: probe ids left out of the comparison (the reason goes in `note`).
        """
        entry = {"name": name, "gate": gate, "expect": expect, "exclude": list(exclude), "note": note}
        start = time.perf_counter()
        try:
            entry["rewards"] = [float(r) for r in fn()]
        except Exception as err:  # noqa: BLE001 - any failure of the consumer's code is a result to report
            entry["error"] = f"{type(err).__name__}: {err}"
            entry["traceback"] = traceback.format_exc()[-3000:]
        entry["seconds"] = round(time.perf_counter() - start, 1)
        self.result["variants"].append(entry)
        self.save()
        return entry.get("rewards")

    def save(self) -> None:
        with open(self.out, "w", encoding="utf-8") as f:
            json.dump(self.result, f, indent=2, ensure_ascii=False)


def versions(packages: list[str]) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def stub_modules(modules: dict[str, list[str]], why: str) -> None:
    """Register empty stand-ins for modules that a consumer imports but its scoring path never calls.

    Each listed function raises if called. The stand-ins have a spec but no file and no version, so transformers'
    availability checks see the package as not installed (a bare module with `__spec__ = None` makes them raise).
    """
    def unavailable(*args, **kwargs):
        raise RuntimeError(f"stubbed by tools/consumers: {why}")

    for name, funcs in modules.items():
        module = types.ModuleType(name)
        module.__path__ = []
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        for func in funcs:
            setattr(module, func, unavailable)
        sys.modules[name] = module
