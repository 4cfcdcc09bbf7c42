"""Chat templates, special tokens, and a reward model's tokenizer made ready to train and score.

The one place these live: the tiny models (`tiny`), training (`train`), scoring (`score`) and the exported
configs (`configs`) all read them from here.
"""

from __future__ import annotations

LLAMA3_SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                         "<|eot_id|>", "<|finetune_right_pad_id|>"]
LLAMA3_PAD_TOKEN = "<|finetune_right_pad_id|>"
# Meta's LLaMA-3 Instruct template: header / content / <|eot_id|> per message, BOS once at the start.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# LLaMA 3.0 calls id 128004 `<|reserved_special_token_2|>`; LLaMA 3.1 renamed it `<|finetune_right_pad_id|>`.
# ChatML models (Qwen2, SmolLM2) have `<|endoftext|>` besides their EOS `<|im_end|>`.
PAD_CANDIDATES = (LLAMA3_PAD_TOKEN, "<|reserved_special_token_2|>", "<|endoftext|>")


class RewardSetupError(ValueError):
    """A reward-model set-up that would train or save the wrong thing; the message names the fix."""

    def _render_traceback_(self):
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


def prepare_reward_tokenizer(tokenizer, chat_template: str = LLAMA3_CHAT_TEMPLATE):
    """Give a LLaMA-3 tokenizer a chat template (the base model ships none) and a dedicated pad token.

    With pad = EOS the reward can be read at the wrong position: a sequence that ends in EOS looks
    padded there. So the pad token is LLaMA 3's reserved `<|finetune_right_pad_id|>` (id 128004).

    Raises:
        RewardSetupError: the vocabulary has no dedicated pad token to use.
    """
    if tokenizer.chat_template is None:
        tokenizer.chat_template = chat_template
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        vocab = tokenizer.get_vocab()
        found = next((tok for tok in PAD_CANDIDATES if tok in vocab), None)
        if found is None:
            raise RewardSetupError(f"No dedicated pad token in this vocabulary (looked for {PAD_CANDIDATES}); "
                                   "pad = EOS misplaces the reward. Add one with tokenizer.add_special_tokens "
                                   "and model.resize_token_embeddings.")
        tokenizer.pad_token = found
    return tokenizer
