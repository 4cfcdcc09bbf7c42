"""The kit's pairs written again in a public dataset's layout, without the kit's metadata, with a few bad rows.

    python tests/foreign_data.py OUT.jsonl   # then: make run ARGS="-p DATA_PATH OUT.jsonl -p UNPAIRED_PATH null"

The layout is PKU-SafeRLHF's (`prompt`, `response_0`, `response_1`, `better_response_id`); which response comes
first is drawn per row (seed 0), so the preferred one is response_0 about half the time. No `id`, `category`,
`split` or `length_balanced`: notebook 01 splits by prompt and notebook 04 computes length balance itself.
`BAD_ROWS` are appended after the good ones, one defect each; `tests/test_foreign_course.py` runs the course on it.

    python tests/foreign_data.py OUT --layout ultrafeedback_binarized   # or any name in LAYOUTS

writes the same pairs, good rows only, in another pair layout of tests/public_layouts/ (`uf_folder`: a dataset
folder OUT/ with train.jsonl holding every pair, as `datasets.load_dataset` reads a Hub repo);
`tests/test_score_notebook.py` runs notebook 04 on each.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

KIT_PAIRS = Path(__file__).resolve().parents[1] / "data" / "preferences.jsonl"
BAD_ROWS = {  # reason the loader must give -> the line
    "missing_field": {"prompt": "What is the capital of France?", "response_0": "Paris.", "response_1": "Lyon."},
    "empty_text": {"prompt": "Name a colour.", "response_0": "Blue.", "response_1": "\u200b",
                   "better_response_id": 0},
    "malformed_json": '{"prompt": "Count to three.", "response_0": "1, 2, 3.", "response_1": "3, 2, 1."',
    "bad_label": {"prompt": "Say hi.", "response_0": "Hi!", "response_1": "Go away.", "better_response_id": "A"},
}


def write_foreign_pairs(out: str | Path, seed: int = 0) -> dict:
    """Write the file; return {"good": n, "bad": {reason: line}} to check the loader's report against."""
    lines = _layout_lines("pku_saferlhf", seed)
    good, bad = len(lines), {}
    for reason, row in BAD_ROWS.items():
        lines.append(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
        bad[reason] = len(lines)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"good": good, "bad": bad}


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _ultrafeedback(i: int, row: dict, first: bool) -> dict:
    chosen, rejected = (_user(row["prompt"]) + [{"role": "assistant", "content": row[side]}]
                        for side in ("chosen", "rejected"))
    return {"prompt": row["prompt"], "prompt_id": f"p{i:04d}", "chosen": chosen, "rejected": rejected,
            "messages": chosen, "score_chosen": 8.0, "score_rejected": 3.0 if first else 5.5}


def _hh_rlhf(i: int, row: dict, first: bool) -> dict:
    return {side: f"\n\nHuman: {row['prompt']}\n\nAssistant: {row[side]}" for side in ("chosen", "rejected")}


def _shp(i: int, row: dict, first: bool) -> dict:
    a, b = (row["chosen"], row["rejected"]) if first else (row["rejected"], row["chosen"])
    return {"post_id": f"s{i}", "domain": "askkit_train", "history": row["prompt"], "human_ref_A": a,
            "human_ref_B": b, "labels": int(first), "score_A": 40 if first else 3, "score_B": 3 if first else 40}


def _axolotl(i: int, row: dict, first: bool) -> dict:
    return {"context": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"], "rating": 4.5}


def _pku(i: int, row: dict, first: bool) -> dict:
    responses = (row["chosen"], row["rejected"]) if first else (row["rejected"], row["chosen"])
    return {"prompt": row["prompt"], "response_0": responses[0], "response_1": responses[1],
            "better_response_id": 0 if first else 1}


LAYOUTS = {"ultrafeedback_binarized": _ultrafeedback, "hh_rlhf": _hh_rlhf, "shp": _shp, "axolotl": _axolotl,
           "pku_saferlhf": _pku, "uf_folder": _ultrafeedback}  # the pair layouts of tests/public_layouts/


def _layout_lines(layout: str, seed: int) -> list[str]:
    """The kit's pairs as JSON lines in `layout`; which answer comes first (where it matters) drawn per row."""
    rng, write = random.Random(seed), LAYOUTS[layout]
    rows = [json.loads(x) for x in KIT_PAIRS.read_text("utf-8").splitlines()]
    return [json.dumps(write(i, row, rng.random() < 0.5), ensure_ascii=False) for i, row in enumerate(rows)]


def write_layout(out: str | Path, layout: str, seed: int = 0) -> Path:
    """The kit's pairs (good rows only, no kit metadata) in `layout`; returns the file (or folder) to load."""
    lines = _layout_lines(layout, seed)
    path = Path(out) / "train.jsonl" if layout == "uf_folder" else Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(out)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--layout" and sys.argv[3] in LAYOUTS:
        print(f"{write_layout(sys.argv[1], sys.argv[3])}: the kit's pairs in the {sys.argv[3]} layout")
    elif len(sys.argv) == 2:
        info = write_foreign_pairs(sys.argv[1])
        print(f"{sys.argv[1]}: {info['good']} pairs in the PKU-SafeRLHF layout, then bad rows {info['bad']}")
    else:
        sys.exit(f"{__doc__}\nlayouts: {', '.join(LAYOUTS)}")
