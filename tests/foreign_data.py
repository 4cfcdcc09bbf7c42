"""The kit's pairs written again in a public dataset's layout, without the kit's metadata, with a few bad rows.

    python tests/foreign_data.py OUT.jsonl   # then: make run ARGS="-p DATA_PATH OUT.jsonl -p UNPAIRED_PATH null"

The layout is PKU-SafeRLHF's (`prompt`, `response_0`, `response_1`, `better_response_id`); which response comes
first is drawn per row (seed 0), so the preferred one is response_0 about half the time. No `id`, `category`,
`split` or `length_balanced`: notebook 01 splits by prompt and notebook 04 computes length balance itself.
`BAD_ROWS` are appended after the good ones, one defect each; `tests/test_foreign_course.py` runs the course on it.
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
    rng, lines = random.Random(seed), []
    for raw in KIT_PAIRS.read_text("utf-8").splitlines():
        row = json.loads(raw)
        first = rng.random() < 0.5
        responses = (row["chosen"], row["rejected"]) if first else (row["rejected"], row["chosen"])
        lines.append(json.dumps({"prompt": row["prompt"], "response_0": responses[0], "response_1": responses[1],
                                 "better_response_id": 0 if first else 1}, ensure_ascii=False))
    good, bad = len(lines), {}
    for reason, row in BAD_ROWS.items():
        lines.append(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
        bad[reason] = len(lines)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"good": good, "bad": bad}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    info = write_foreign_pairs(sys.argv[1])
    print(f"{sys.argv[1]}: {info['good']} pairs in the PKU-SafeRLHF layout, then bad rows {info['bad']}")
