"""transformers 4.57 (what RewardBench and many serving stacks still pin), fp32 on CPU.

Loading and scoring: `AutoTokenizer.from_pretrained(MODEL)`, `AutoModelForSequenceClassification.from_pretrained(MODEL,
dtype=torch.float32)`, `tokenizer.apply_chat_template(messages, tokenize=True)` and `model(input_ids).logits[0, 0]`
one probe at a time (no padding). Second variant: `pipeline("text-classification", model=MODEL,
function_to_apply="none")` on the chat-templated text with `add_special_tokens=False` (the template already holds
`<|begin_of_text|>`; without the flag the pipeline adds a second BOS).
transformers 4.x cannot read transformers 5's `tokenizer_class: "TokenizersBackend"` and ignores `rope_parameters`
(it reads a top-level `rope_theta`, default 10000). When AutoTokenizer fails, a third, diagnostic variant (not gated)
loads the same tokenizer.json with `PreTrainedTokenizerFast.from_pretrained(MODEL)` so the model's own rewards are
still measured: a large Δ there is the missing `rope_theta`.
"""

import torch
import transformers
from common import Run
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast, pipeline

run = Run("transformers4", ["transformers", "tokenizers", "torch"])
convs = run.conversations()


@torch.no_grad()
def score_with(tokenizer, label):
    model = AutoModelForSequenceClassification.from_pretrained(run.model, dtype=torch.float32).eval()
    run.note(f"{label}: rope_theta read by transformers {transformers.__version__}: "
             f"{getattr(model.config, 'rope_theta', None)}; pad_token_id {model.config.pad_token_id}")
    ids = [tokenizer.apply_chat_template(c, tokenize=True) for c in convs]
    run.check_ids(ids, f"{label} token ids")
    return [model(input_ids=torch.tensor([x])).logits[0, 0].item() for x in ids]


def auto():
    return score_with(AutoTokenizer.from_pretrained(run.model), "AutoTokenizer")


def text_pipeline():
    pipe = pipeline("text-classification", model=run.model, dtype=torch.float32, device="cpu")
    texts = [pipe.tokenizer.apply_chat_template(c, tokenize=False) for c in convs]
    return [out["score"] for out in pipe(texts, function_to_apply="none", add_special_tokens=False, batch_size=1)]


if run.variant("AutoModelForSequenceClassification fp32", auto) is None:
    run.variant("same, tokenizer via PreTrainedTokenizerFast (diagnostic)", gate=False, fn=lambda: score_with(
        PreTrainedTokenizerFast.from_pretrained(run.model), "PreTrainedTokenizerFast"),
        note="AutoTokenizer failed; this loads tokenizer.json directly to measure the model itself")
run.variant('pipeline("text-classification", function_to_apply="none") fp32', text_pipeline)
