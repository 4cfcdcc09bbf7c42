"""Row checks and layouts: one input record in, one pair or unpaired row in TRL's format out, or a RowError.

Accepted row layouts (detected per row) for `load_preferences`:
* plain: `prompt`, `chosen`, `rejected` strings;
* conversational: `prompt` a message list (or string), `chosen`/`rejected` one assistant message each;
  or, with no prompt, `chosen`/`rejected` full conversations that share every turn but the last;
* UltraFeedback-binarized: `prompt` a string and `chosen`/`rejected` full conversations that repeat it, with
  optional `score_chosen`/`score_rejected`;
* PKU-SafeRLHF: `prompt`, `response_0`, `response_1`, `better_response_id` (0 or 1);
* SHP: `history` (the prompt), `human_ref_A`, `human_ref_B`, `labels` (1: A is preferred, 0: B), optional
  `score_A`/`score_B`;
* Axolotl: `context`, `input` or `question` as the prompt, optional `system`, optional numeric `rating`;
* hh-rlhf: `chosen`/`rejected` dialogues "\\n\\nHuman: ...\\n\\nAssistant: ..."; the prompt is the
  shared turns before the last "Assistant:".
`load_unpaired` takes `prompt`, `completion` and `label` (bool, "true"/"false" or 1/0; TRL's KTO format, plain
or conversational), or a numeric `rating` turned into a label by an explicit `rating_threshold`.

Rows come out in TRL's conversational explicit-prompt format, contents stripped of surrounding whitespace (and
otherwise as written). Emptiness, identical answers and duplicates are judged on a canonical form of the text:
Unicode NFC, zero-width and control characters removed, runs of whitespace as one space. Every dropped row gets
a reason code and a message naming file, line (or record) and field.
"""

from __future__ import annotations

import math
import re
import unicodedata

from .data_io import DuplicateKeys, LongInteger, RowError, kind

ROLES = ("system", "user", "assistant")
PROMPT_KEYS = ("prompt", "context", "input", "question")
META_KEYS = ("id", "category", "language", "failure_mode", "length_balanced", "split", "rating", "source")
ON_ERROR = ("report", "raise")
HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
# Unicode's Cc and Cf characters that are not whitespace (zero-width spaces and joiners, BOM, bidi marks,
# soft hyphen, C0/C1 controls); tests/test_data_faults.py checks this class against unicodedata
INVISIBLE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f"
                       "\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
                       "\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
                       "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
ASCII_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1b\x7f]")  # INVISIBLE's ASCII part
FIXES = {
    "malformed_json": "make the line one complete JSON object (check quotes, commas and brackets).",
    "undecodable_bytes": "save the file as UTF-8.",
    "invalid_unicode": "write the whole character: a lone surrogate escape such as \\ud83d is half of one "
                       "(an emoji needs a pair, e.g. \\ud83d\\ude00), or remove it.",
    "duplicate_key": "keep one value for the field: JSON readers silently keep only the last one.",
    "missing_field": "add the field (the prompt may also be called context, input or question).",
    "wrong_type": "use a string, or a list of {'role', 'content'} messages (a finite number for ratings and "
                  "scores).",
    "empty_text": "write the text, or delete the row.",
    "identical_pair": "a pair needs two different answers: fix the rejected answer or delete the row.",
    "duplicate_pair": "delete the repeated row.",
    "duplicate_row": "delete the repeated row.",
    "bad_role": "use the roles 'system', 'user' and 'assistant'.",
    "bad_structure": "prompt: optional system message, then user/assistant turns ending on user; "
                     "each answer: one assistant message.",
    "bad_label": "use true/false (or 1/0) for label; 0 or 1 for better_response_id and labels.",
    "unknown_format": "use one of the layouts listed in help(helpers.data).",
}


def canonical(text: str) -> str:
    """The form texts are compared in: NFC, no zero-width or control characters, whitespace runs as one space."""
    if text.isascii():  # already NFC; isprintable() is False for any control character, \n and \t included
        return " ".join((text if text.isprintable() else ASCII_INVISIBLE.sub("", text)).split())
    return " ".join(INVISIBLE.sub("", unicodedata.normalize("NFC", text)).split())


def _has_invisible(text: str) -> bool:
    if text.isascii():
        return not text.isprintable() and ASCII_INVISIBLE.search(text) is not None
    return INVISIBLE.search(text) is not None


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise RowError("wrong_type", field, f"expected a string, got {kind(value)}")
    text = value.strip()
    if not text.isascii() and LONE_SURROGATE.search(text):
        raise RowError("invalid_unicode", field, "the text holds a lone surrogate escape (half of a character), "
                       "which cannot be stored as UTF-8")
    if not text:
        raise RowError("empty_text", field, "the text is empty")
    if _has_invisible(text) and not canonical(text):
        raise RowError("empty_text", field, "the text holds only invisible characters (zero-width or control)")
    return text


def _number(value, field: str) -> float:
    """A finite number (a CSV cell may spell it as a string)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number):
        shown = kind(value) if isinstance(value, LongInteger) else repr(value)
        raise RowError("wrong_type", field, f"expected a finite number, got {shown}"[:200],
                       "write a number (not NaN or infinity), or leave the field out.")
    return number


def _choice(value, field: str) -> int:
    """0 or 1 (or "0"/"1"): which of two responses is preferred."""
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return value
    raise RowError("bad_label", field, f"expected 0 or 1, got {value!r}"[:200],
                   f"{field} says which response is preferred: 0 or 1.")


def _messages(value, field: str) -> list[dict]:
    if not isinstance(value, list):
        raise RowError("wrong_type", field, f"expected a list of messages, got {kind(value)}")
    if not value:
        raise RowError("bad_structure", field, "the message list is empty")
    out = []
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if isinstance(msg, DuplicateKeys):
            raise RowError("duplicate_key", f"{where}.{msg.duplicate}", f"the key {msg.duplicate!r} appears twice")
        if not isinstance(msg, dict) or "role" not in msg:
            raise RowError("bad_structure", where, "a message must be an object with 'role' and 'content'")
        if msg["role"] not in ROLES:
            raise RowError("bad_role", f"{where}.role", f"unknown role {msg['role']!r}"[:200])
        if msg.get("content") is None:
            raise RowError("bad_structure", where, "the message has no 'content'")
        out.append({"role": msg["role"], "content": _text(msg["content"], f"{where}.content")})
    return out


def _check_prompt(msgs: list[dict], field: str) -> list[dict]:
    start = 1 if msgs and msgs[0]["role"] == "system" else 0
    for i, msg in enumerate(msgs[start:], start):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if msg["role"] != expected:
            raise RowError("bad_structure", f"{field}[{i}].role",
                           f"turn {i} is {msg['role']!r} where {expected!r} was expected")
    if len(msgs) == start or msgs[-1]["role"] != "user":
        raise RowError("bad_structure", field, "the prompt must end on a user turn")
    return msgs


def _prompt(value, field: str, system=None) -> list[dict]:
    if isinstance(value, str):
        msgs = [{"role": "user", "content": _text(value, field)}]
    else:
        msgs = _messages(value, field)
    if system is not None:
        if msgs[0]["role"] == "system":
            raise RowError("bad_structure", "system", "a system field and a system message in the prompt")
        msgs.insert(0, {"role": "system", "content": _text(system, "system")})
    return _check_prompt(msgs, field)


def _answer(value, field: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": _text(value, field)}]
    msgs = _messages(value, field)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise RowError("bad_structure", field, f"expected one assistant message, got roles "
                       f"{[m['role'] for m in msgs]}")
    return msgs


def _turns(msgs: list[dict]) -> list[tuple[str, str]]:
    return [(m["role"], canonical(m["content"])) for m in msgs]


def _split_conversation(chosen, rejected, field="chosen") -> tuple[list, list, list]:
    """Full conversations sharing the prompt turns -> (prompt, chosen answer, rejected answer)."""
    if _turns(chosen[:-1]) != _turns(rejected[:-1]):
        raise RowError("bad_structure", "rejected", "chosen and rejected must share every turn but the last")
    answers = _answer(chosen[-1:], "chosen"), _answer(rejected[-1:], "rejected")
    return _check_prompt(chosen[:-1], field), *answers


def _repeated(prompt: list[dict], value, field: str) -> list[dict]:
    """A full conversation that repeats the prompt's turns (UltraFeedback-binarized) -> its last message."""
    msgs = _messages(value, field)
    if _turns(msgs[:-1]) != _turns(prompt):
        raise RowError("bad_structure", field, f"the conversation's first {len(msgs) - 1} turn(s) are not the "
                       "prompt's turns", "chosen and rejected must repeat the prompt's turns, then add one "
                       "assistant answer (or hold only that answer).")
    if msgs[-1]["role"] != "assistant":
        raise RowError("bad_structure", f"{field}[{len(msgs) - 1}].role", "the last turn must be the assistant's")
    return msgs[-1:]


def _hh_dialogue(text: str, field: str) -> list[dict]:
    parts = HH_TURN.split(text)
    if parts[0].strip():
        raise RowError("bad_structure", field, "text before the first 'Human:'")
    return [{"role": "user" if role == "Human" else "assistant", "content": _text(content, field)}
            for role, content in zip(parts[1::2], parts[2::2], strict=False)]


def _is_hh(text: str) -> bool:
    return text.lstrip().startswith("Human:")


def _missing(row: dict, needed: tuple[str, ...], other: str) -> RowError:
    absent = next((k for k in needed if row.get(k) is None), needed[0])
    if any(k in row for k in needed) or any(k in row for k in PROMPT_KEYS):
        return RowError("missing_field", absent, f"the field {absent!r} is missing")
    if all(k in row for k in ("chosen", "rejected")) or "completion" in row:
        return RowError("unknown_format", "(row)", f"this looks like {other}")
    return RowError("unknown_format", "(row)", f"no known layout matches the keys {sorted(row)[:12]}"[:300])


def _require(row: dict, fields: tuple[str, ...]) -> None:
    absent = next((k for k in fields if row.get(k) is None), None)
    if absent is not None:
        raise RowError("missing_field", absent, f"the field {absent!r} is missing")


def _two_responses(row: dict, layout: str, prompt_key: str, a: str, b: str, choice_key: str, a_wins) -> tuple:
    """PKU-SafeRLHF and SHP: a prompt, two responses and which one is preferred."""
    _require(row, (prompt_key, a, b, choice_key))
    first = _choice(row[choice_key], choice_key) == a_wins
    win, lose = (a, b) if first else (b, a)
    return layout, _prompt(row[prompt_key], prompt_key), _answer(row[win], win), _answer(row[lose], lose)


def _pair(row: dict) -> tuple[str, list, list, list]:
    """One raw row -> (layout name, prompt, chosen, rejected) in TRL's conversational format."""
    if "response_0" in row or "better_response_id" in row:
        return _two_responses(row, "pku_saferlhf", "prompt", "response_0", "response_1", "better_response_id", 0)
    if "human_ref_A" in row or "history" in row:
        return _two_responses(row, "shp", "history", "human_ref_A", "human_ref_B", "labels", 1)
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if chosen is None or rejected is None:
        raise _missing(row, ("chosen", "rejected"), "an unpaired row: use load_unpaired")
    key = next((k for k in PROMPT_KEYS if row.get(k) is not None), None)
    system = row.get("system")
    if isinstance(chosen, str) and isinstance(rejected, str):
        if key is None and _is_hh(chosen):
            turns = _hh_dialogue(chosen, "chosen"), _hh_dialogue(rejected, "rejected")
            return "hh_rlhf", *_split_conversation(*turns)
        if key is None:
            raise RowError("missing_field", "prompt", "the field 'prompt' is missing")
        layout = "plain" if key == "prompt" and system is None else "axolotl"
        answers = _answer(chosen, "chosen"), _answer(rejected, "rejected")
        return layout, _prompt(row[key], key, system), *answers
    if isinstance(chosen, list) and isinstance(rejected, list):
        if key is None:
            turns = _messages(chosen, "chosen"), _messages(rejected, "rejected")
            return "conversational_implicit", *_split_conversation(*turns)
        prompt = _prompt(row[key], key, system)
        if len(chosen) > 1 or len(rejected) > 1:
            return "ultrafeedback", prompt, _repeated(prompt, chosen, "chosen"), _repeated(prompt, rejected,
                                                                                           "rejected")
        return "conversational", prompt, _answer(chosen, "chosen"), _answer(rejected, "rejected")
    bad = "chosen" if not isinstance(chosen, (str, list)) else "rejected"
    raise RowError("wrong_type", bad, f"chosen and rejected must both be strings or both message lists, got "
                   f"{kind(chosen)} and {kind(rejected)}")


def _margin(row: dict, layout: str) -> float:
    """TRL's optional `margin`: a `margin` field, else the preferred answer's score minus the other's."""
    if row.get("margin") is not None:
        return _number(row["margin"], "margin")
    if layout == "shp" and (row.get("score_A") is not None or row.get("score_B") is not None):
        _require(row, ("score_A", "score_B"))
        a_minus_b = _number(row["score_A"], "score_A") - _number(row["score_B"], "score_B")
        return a_minus_b if _choice(row["labels"], "labels") == 1 else -a_minus_b
    if row.get("score_chosen") is None and row.get("score_rejected") is None:
        raise RowError("missing_field", "score_chosen", "margin=True needs a score for each answer",
                       "add score_chosen and score_rejected (SHP: score_A and score_B) or a margin field, or load "
                       "without margin=True.")
    _require(row, ("score_chosen", "score_rejected"))
    return _number(row["score_chosen"], "score_chosen") - _number(row["score_rejected"], "score_rejected")


def parse_label(value, field: str = "label") -> bool:
    """true/false, "true"/"false", 1/0 or "1"/"0" -> bool; anything else raises RowError("bad_label")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise RowError("bad_label", field, f"expected true/false (or 1/0), got {value!r}"[:200])


def _label(row: dict, rating_threshold) -> tuple[str, bool]:
    if row.get("label") is not None:
        return "", parse_label(row["label"])
    if row.get("rating") is None:
        raise RowError("missing_field", "label", "the field 'label' is missing")
    if rating_threshold is None:
        raise RowError("missing_field", "label", "the row has a rating but no label",
                       "pass rating_threshold= (ratings at or above it are desirable) to turn ratings into labels, "
                       "or add a label.")
    return "rated_", _number(row["rating"], "rating") >= rating_threshold


def _unpaired(row: dict, rating_threshold=None) -> tuple[str, list, list, bool]:
    """One raw row -> (layout name, prompt, completion, label)."""
    if "chosen" in row and "rejected" in row:
        raise RowError("unknown_format", "(row)", "this is a preference pair: use load_preferences "
                       "(and helpers.kto.unpair_preferences to unpair it)")
    completion, key = row.get("completion"), next((k for k in PROMPT_KEYS if row.get(k) is not None), None)
    if completion is None or (row.get("label") is None and row.get("rating") is None):
        raise _missing(row, ("completion", "label"), "a preference pair: use load_preferences")
    rated, label = _label(row, rating_threshold)
    if key is None and isinstance(completion, list):
        msgs = _messages(completion, "completion")
        prompt, answer = _check_prompt(msgs[:-1], "completion"), _answer(msgs[-1:], "completion")
        return f"{rated}conversational_implicit", prompt, answer, label
    if key is None:
        raise RowError("missing_field", "prompt", "the field 'prompt' is missing")
    layout = "conversational" if isinstance(completion, list) or isinstance(row[key], list) else "plain"
    return f"{rated}{layout}", _prompt(row[key], key, row.get("system")), _answer(completion, "completion"), label


def _meta(row: dict) -> dict:
    meta = {}
    for key in META_KEYS:
        value = row.get(key)
        if value is None or value == "":
            continue
        if key == "length_balanced":
            value = parse_label(value, key)
        elif key == "rating":
            value = _number(value, key)
        elif key == "id" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif not isinstance(value, str):
            raise RowError("wrong_type", key, f"expected a string, got {kind(value)}")
        elif not value.isascii() and LONE_SURROGATE.search(value):
            raise RowError("invalid_unicode", key, "the text holds a lone surrogate escape (half of a character)")
        meta[key] = value
    return meta


def _normalise(row: dict, kind: str, seen: dict, where: str, options: dict) -> tuple[str, dict]:
    if isinstance(row, DuplicateKeys):
        raise RowError("duplicate_key", row.duplicate, f"the key {row.duplicate!r} appears twice in the object")
    if kind == "pairs":
        layout, prompt, chosen, rejected = _pair(row)
        flat = canonical(chosen[0]["content"]), canonical(rejected[0]["content"])
        if flat[0] == flat[1]:
            raise RowError("identical_pair", "rejected", "chosen and rejected are the same text")
        out, reason = {"prompt": prompt, "chosen": chosen, "rejected": rejected}, "duplicate_pair"
        if options.get("margin"):
            out["margin"] = _margin(row, layout)
    else:
        layout, prompt, answer, label = _unpaired(row, options.get("rating_threshold"))
        out, reason, flat = {"prompt": prompt, "completion": answer, "label": label}, "duplicate_row", \
            (canonical(answer[0]["content"]),)
    out.update(_meta(row))
    key = (tuple(_turns(prompt)), *flat)
    if key in seen:
        raise RowError(reason, "(row)", f"same prompt and answers as {seen[key]}")
    seen[key] = where
    return layout, out
