"""Online RL against the reward model (notebook 06): a held-out judge, a length penalty, evaluation during training.

`GRPOConfig`, `GRPOTrainer` and the reward read by hand stay in the notebook. Here: the prompts, a second reward
model the policy never sees (`train_judge`), a length penalty written as a GRPO reward function, a callback that
scores greedy answers to held-out prompts every few steps, GRPO's group-relative advantage, and the plots.
"""

from __future__ import annotations

import json

import numpy as np


def _first_row_per_prompt(path) -> list[dict]:
    from .data_io import read_jsonl

    seen, rows = set(), []
    for row in read_jsonl(path):
        key = json.dumps(row["prompt"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def unique_prompts(path) -> list[list[dict]]:
    """The distinct conversational prompts of a pairs file (RUN_DIR/data/train.jsonl), in first-seen order."""
    return [row["prompt"] for row in _first_row_per_prompt(path)]


def held_out_set(path, n: int) -> tuple[list[list[dict]], list[str]]:
    """The first `n` distinct prompts of a pairs file and, for each, the human-preferred (chosen) answer's text."""
    rows = _first_row_per_prompt(path)[:n]
    return [row["prompt"] for row in rows], [row["chosen"][-1]["content"] for row in rows]


def word_f1(answer: str, reference: str) -> float:
    """Word-overlap F1 between an answer and a reference answer (lower-cased words, counted with repeats)."""
    a, r = answer.lower().split(), reference.lower().split()
    common = sum(min(a.count(w), r.count(w)) for w in set(a))
    return 0.0 if common == 0 else 2 * common / (len(a) + len(r))


def group_advantages(rewards, num_generations: int) -> np.ndarray:
    """GRPO's advantage, as TRL 1.16 computes it with `scale_rewards="group"` (grpo_trainer.py:2763-2787).

    Each prompt's `num_generations` completions form a group: advantage = (reward - group mean) / (group std + 1e-4),
    the std being torch's default (unbiased, n - 1). No value network: the group is the baseline.
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1, num_generations)
    mean, std = r.mean(axis=1, keepdims=True), r.std(axis=1, ddof=1, keepdims=True)
    return ((r - mean) / (std + 1e-4)).reshape(-1)


def reference_states(model, tokenizer, conversations: list[list[dict]], batch_size: int = 16) -> np.ndarray:
    """`helpers.diagnose.last_token_states` with every LoRA adapter switched off: the reference's hidden states.

    Works on the plain model and after a trainer has wrapped it in LoRA (the layers are changed in place), so a
    judge built on the policy's reference keeps reading the frozen base while the adapter trains.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    from .diagnose import last_token_states

    lora_layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer) and not m.disable_adapters]
    plain = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PeftModel's wrapped model
    was_training = model.training
    model.eval()
    try:
        for layer in lora_layers:
            layer.enable_adapters(False)
        return last_token_states(plain, tokenizer, conversations, batch_size)
    finally:
        for layer in lora_layers:
            layer.enable_adapters(True)
        model.train(was_training)


class LinearJudge:
    """A second reward model: a Bradley–Terry linear head on the reference policy's last-token states.

    Trained on pairs the policy's reward model never saw, and reading the frozen reference (not the adapter being
    trained), it is a judge the policy is not optimised against.
    """

    def __init__(self, model, tokenizer, weights: np.ndarray, trained_on: int):
        self.model, self.tokenizer, self.weights, self.trained_on = model, tokenizer, weights, trained_on

    def score(self, prompts: list[list[dict]], responses: list[str]) -> np.ndarray:
        conversations = [p + [{"role": "assistant", "content": r}] for p, r in zip(prompts, responses, strict=True)]
        return reference_states(self.model, self.tokenizer, conversations) @ self.weights

    def accuracy(self, pairs: list[dict]) -> float:
        """Pairwise accuracy on rows with prompt/chosen/rejected (conversational)."""
        prompts = [row["prompt"] for row in pairs]
        chosen = self.score(prompts, [row["chosen"][-1]["content"] for row in pairs])
        rejected = self.score(prompts, [row["rejected"][-1]["content"] for row in pairs])
        return float(np.mean(chosen > rejected))


def train_judge(model, tokenizer, pairs: list[dict], l2: float = 1e-4) -> LinearJudge:
    """Fit the judge's head w by Bradley–Terry on `pairs`: minimise -log σ(w·(h_chosen - h_rejected)) + l2·|w|².

    Args:
        model: the policy (its reference: LoRA layers are switched off while reading it; see `reference_states`).
        tokenizer: the policy's, with its chat template.
        pairs: conversational rows (prompt, chosen, rejected), none of them in the reward model's training.
    """
    import torch

    if len(pairs) < 10:
        raise ValueError(f"train_judge needs at least 10 pairs to fit a head, got {len(pairs)}.")
    h_chosen = reference_states(model, tokenizer, [row["prompt"] + row["chosen"] for row in pairs])
    h_rejected = reference_states(model, tokenizer, [row["prompt"] + row["rejected"] for row in pairs])
    diff = torch.tensor(h_chosen - h_rejected, dtype=torch.float64)
    w = torch.zeros(diff.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = -torch.nn.functional.logsigmoid(diff @ w).mean() + l2 * (w @ w)
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearJudge(model, tokenizer, w.detach().numpy().astype(np.float32), trained_on=len(pairs))


def length_penalty(per_word: float):
    """A GRPO reward function: -per_word x the completion's number of words (added to the reward model's reward)."""
    def length_penalty(completions, **kwargs) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [-per_word * len(text.split()) for text in texts]

    return length_penalty


def evaluate_answers(model, tokenizer, prompts, references, scorer, judge, max_new_tokens: int) -> dict:
    """Greedy answers to `prompts` from the model as it is now, and three verdicts on them.

    rm: the reward model (the one trained against); judge: the second reward model; overlap: word F1 against the
    human-preferred answer (`references`), a judge with no model at all. Also words and distinct-2.
    """
    from .diagnose import distinct_n
    from .kto_train import generate_responses

    answers = generate_responses(model, tokenizer, prompts, max_new_tokens, batch_size=len(prompts), progress=False)
    rm = scorer.score_batch(list(zip(prompts, answers, strict=True)), batch_size=len(answers))  # one batch, as GRPO
    judged = judge.score(prompts, answers)
    return {"answers": answers, "rm": [float(x) for x in rm], "judge": [float(x) for x in judged],
            "overlap": [word_f1(a, r) for a, r in zip(answers, references, strict=True)],
            "words": float(np.mean([len(a.split()) for a in answers])), "distinct_2": distinct_n(answers, 2)}


def make_eval_callback(tokenizer, prompts, references, scorer, judge, max_new_tokens: int, every: int, before: dict,
                       also_at: tuple[int, ...] = ()):
    """A `TrainerCallback` that runs `evaluate_answers` every `every` steps, at the last step and at `also_at`.

    `.evaluations` = {step: result}, starting with {0: before}.
    """
    from transformers import TrainerCallback

    class HeldOutEval(TrainerCallback):
        def __init__(self):
            self.evaluations = {0: before}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0 or state.global_step in (state.max_steps, *also_at):
                self.evaluations[state.global_step] = evaluate_answers(model, tokenizer, prompts, references, scorer,
                                                                       judge, max_new_tokens)

    return HeldOutEval()


EXPECTED = {"beta": ("kl", "a larger β should end nearer the reference"),
            "length_penalty": ("words", "a length penalty should shorten the answers")}


def check_knob_runs(knob_runs) -> None:
    """Stop before any training when a KNOB_RUNS entry is not one knob this notebook knows, with a number.

    Raises:
        ValueError: naming the entry, the knobs there are, and an example.
    """
    for knob in knob_runs:
        if not (isinstance(knob, dict) and len(knob) == 1 and set(knob) <= set(EXPECTED)
                and isinstance(next(iter(knob.values())), int | float)):
            raise ValueError(f"KNOB_RUNS entry {knob!r}: each entry changes one knob, one of {sorted(EXPECTED)}, to a "
                             "number, e.g. [{'beta': 0.4}, {'length_penalty': 0.1}]; [] runs none.")


def knob_effects(baseline: dict, runs: list[dict]) -> list[dict]:
    """What each knob run changed against the main run at the same step, and whether it moved what it should.

    Args:
        baseline: {"kl", "rm", "judge", "words", ...} of the main run at the knob runs' step count.
        runs: the same keys plus "knob", e.g. {"beta": 0.4} or {"length_penalty": 0.1}, one knob each.

    Returns:
        One dict per run: knob, the deltas (kl, rm, judge, words), moved_as_expected, and a printable line.
    """
    rows = []
    for run in runs:
        (name, value), = run["knob"].items()
        delta = {k: float(np.mean(run[k]) - np.mean(baseline[k])) for k in ("kl", "rm", "judge", "overlap", "words")}
        target, why = EXPECTED[name]
        moved = delta[target] < 0
        line = (f"{name}={value}: ΔKL {delta['kl']:+.3f}, ΔRM {delta['rm']:+.3f}, Δjudge {delta['judge']:+.3f}, "
                f"Δoverlap {delta['overlap']:+.3f}, Δwords {delta['words']:+.1f} | {why}: "
                f"{'it did' if moved else 'it did NOT on this run'}")
        rows.append({"knob": name, "value": value, **{f"delta_{k}": v for k, v in delta.items()},
                     "moved_as_expected": moved, "line": line})
    return rows


def plot_knobs(effects: list[dict]):
    """Bars: each knob run's change in KL, RM reward, judge score and answer length against the main run."""
    import matplotlib.pyplot as plt

    keys = (("delta_kl", "KL (nats/token)"), ("delta_rm", "RM reward"), ("delta_judge", "second RM"),
            ("delta_overlap", "overlap F1"), ("delta_words", "answer words"))
    fig, axes = plt.subplots(1, len(keys), figsize=(14, 3.2))
    labels = [f"{e['knob']}={e['value']}" for e in effects]
    for ax, (key, title) in zip(axes, keys, strict=True):
        ax.bar(labels, [e[key] for e in effects], color=["tab:purple", "tab:green", "tab:grey"][:len(effects)])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(title=f"Δ {title}", ylabel="knob run - main run")
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle("each knob against the main run at the same step")
    fig.tight_layout()
    plt.close(fig)
    return fig


def kl_over_steps(log_history: list[dict], last: int = 4, upto: int | None = None) -> float:
    """TRL's logged KL to the reference, averaged over its last `last` steps (up to step `upto`): a steadier value.

    NaN when the run logged no KL at all: with `beta=0` TRL loads no reference and computes none.
    """
    values = [h["kl"] for h in log_history if "kl" in h and (upto is None or h.get("step", 0) <= upto)]
    if not values and not any("kl" in h for h in log_history):
        return float("nan")
    if not values:
        raise ValueError(f"No KL logged up to step {upto}: log every step (logging_steps=1).")
    return float(np.mean(values[-last:]))


def plot_grpo_curves(log_history: list[dict]):
    """GRPO's training logs per step: mean reward of the sampled completions, KL to the reference, their length."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    panels = (("reward", "reward (RM + any penalty)", "mean reward of the group's samples"),
              ("kl", "KL to the reference (nats/token)", "kl: how far the policy moved"),
              ("completions/mean_length", "tokens", "sampled completion length"))
    for ax, (key, ylabel, title) in zip(axes, panels, strict=True):
        points = [(h["step"], h[key]) for h in log_history if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", color="tab:blue")
        ax.set(xlabel="step", ylabel=ylabel, title=title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_overoptimisation(evaluations: dict[int, dict], kl_by_step: dict[int, float] | None = None):
    """Held-out greedy answers over training: the reward model the policy is trained against, and two judges.

    Each is drawn as the change since step 0 in units of its step-0 spread across prompts, so one axis holds all
    three. Over-optimisation: the first keeps rising while a judge stalls or falls.
    """
    import matplotlib.pyplot as plt

    steps = sorted(evaluations)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for key, label, colour in (("rm", "reward model (trained against)", "tab:blue"),
                               ("judge", "second reward model (never seen)", "tab:orange"),
                               ("overlap", "overlap with the human-preferred answer", "tab:green")):
        before = np.asarray(evaluations[steps[0]][key])
        scale = before.std() or 1.0
        ax.plot(steps, [(np.mean(evaluations[s][key]) - before.mean()) / scale for s in steps], marker="o",
                color=colour, label=label)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="GRPO step", ylabel="change in mean score (step-0 std)",
           title="held-out prompts: trained-against reward vs judges")
    if kl_by_step:
        ax.set_xticks(steps, [f"{s}\nKL {kl_by_step.get(s, 0):.2f}" for s in steps])
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def moved(change: float, tolerance: float = 0.1) -> str:
    """'rose', 'fell' or 'stayed': a change in step-0 spreads, within `tolerance` of 0 counted as no change."""
    return "rose" if change > tolerance else "fell" if change < -tolerance else "stayed"


def read_overoptimisation(changes: dict[str, float], tolerance: float = 0.1) -> str:
    """One sentence on this run's held-out lines: {"rm", "judge", "overlap"}, each a change in step-0 spreads.

    Over-optimisation as it appears: the reward model trained against rises while neither judge does. Changes
    within `tolerance` spreads of 0 (16 prompts: noise) count as staying put.
    """
    judges = {"the second reward model": changes["judge"], "the overlap": changes["overlap"]}
    if moved(changes["rm"], tolerance) != "rose":
        return ("Reading: the reward model's own score of the held-out answers did not rise; GRPO optimises the "
                "reward of sampled answers (the reward curve), which greedy held-out answers need not follow in a "
                "short run.")
    risen = [name for name, change in judges.items() if moved(change, tolerance) == "rose"]
    if not risen:
        return ("Reading: the reward model's score rose while neither judge did: over-optimisation as it really "
                "appears, the policy learning what this reward model likes rather than what the judges like.")
    return (f"Reading: the reward model's score rose and so did {' and '.join(risen)}: on this run the judges do not "
            "show over-optimisation yet; a judge that rises may also share the reward model's blind spots.")
