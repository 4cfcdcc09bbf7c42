"""Train from an exported config (`helpers.configs`) the way notebooks 02 and 05 train.

`trl reward --config configs/reward.yaml` builds the same trainer from the same file, but for a quantized base
TRL casts every trainable weight (LoRA, the `score` head) to bf16 (trl/trainer/reward_trainer.py and
kto_trainer.py: "the PEFT adapter weights are converted to bf16"), and its script has no setting that undoes it:
small updates round away (notebook 02 measures it) and on a T4 the fp16 GradScaler fails at the first step. This
launcher reads the file with TRL's own parser, builds the trainer as TRL's script does, stores the trainable
weights in fp32 again (`helpers.train.keep_trainable_fp32`), then trains and saves. From the run folder:

    python -m helpers.trl_launch reward --config configs/reward.yaml
    python -m helpers.trl_launch kto --config configs/kto.yaml --accelerate_config multi_gpu --num_processes 4

Other arguments (`--num_train_epochs 1`) override the file, as with `trl reward`; accelerate's own
(`--accelerate_config`, `--num_processes`) start that many processes through `accelerate launch`, as TRL does.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from .env import KitError

TRAINERS = {"reward": "RewardTrainer", "kto": "KTOTrainer"}


def _parse(command: str, argv: list[str]):
    if command not in TRAINERS:
        raise KitError(f"Unknown command {command!r}: use python -m helpers.trl_launch reward|kto --config FILE.")
    parser = importlib.import_module(f"trl.scripts.{command}").make_parser(prog=f"python -m helpers.trl_launch "
                                                                          f"{command}")
    return parser.parse_args_and_config(argv, return_remaining_strings=True, separate_remaining_strings=True)


def _require_run_folder(dataset_name: str | None) -> None:
    """The exported paths are relative to the run folder: say so, rather than let datasets look them up on the Hub."""
    if dataset_name and dataset_name.startswith("configs/") and not Path(dataset_name).is_dir():
        raise KitError(f"{dataset_name} is not in {Path.cwd()}: the paths in an exported config are relative to the "
                       "run folder (the one holding configs/). Fix: cd RUN_DIR first, then run this again.")


def build_trainer(command: str, argv: list[str]):
    """The trainer TRL's `command` script builds from `argv`, its trainable weights stored in fp32 again.

    Returns:
        (trainer, how many trainable values were in each dtype before, e.g. {"torch.bfloat16": 28800}).
    """
    import trl
    from datasets import load_dataset

    from .train import check_trainable_fp32, keep_trainable_fp32

    script_args, training_args, model_args, _, config_rest, cli_rest = _parse(command, argv)
    if config_rest or cli_rest:
        raise KitError(f"Unknown arguments {config_rest + cli_rest}: not TRL's {command} settings.")
    _require_run_folder(script_args.dataset_name)
    training_args.model_init_kwargs = {  # as TRL's script does
        "revision": model_args.model_revision, "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation, "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {})}
    dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config)
    trainer = getattr(trl, TRAINERS[command])(
        model=model_args.model_name_or_path, args=training_args, train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=dataset[script_args.dataset_test_split] if training_args.eval_strategy != "no" else None,
        quantization_config=trl.get_quantization_config(model_args), peft_config=trl.get_peft_config(model_args))
    stored_before = keep_trainable_fp32(trainer.model)
    check_trainable_fp32(trainer.model)
    return trainer, stored_before


def _accelerate(launch_args: list[str], script_args: list[str]) -> None:
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_command(launch_command_parser().parse_args([*launch_args, "-m", "helpers.trl_launch", *script_args]))


def _without(args: list[str], removed: list[str]) -> list[str]:
    """`args` less `removed`, an ordered subsequence of it."""
    rest, out = iter(removed), []
    current = next(rest, None)
    for arg in args:
        if current is not None and arg == current:
            current = next(rest, None)
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit("usage: python -m helpers.trl_launch reward|kto --config FILE [TRL or accelerate options]")
    command, rest = argv[0], argv[1:]
    *_, config_rest, cli_rest = _parse(command, rest)
    if config_rest or cli_rest:  # accelerate's options: start the processes, each running this module again
        _accelerate(resolve_accelerate_config_argument(config_rest + cli_rest), [command, *_without(rest, cli_rest)])
        return
    trainer, stored_before = build_trainer(command, rest)
    trainer.accelerator.print(f"trainable values as TRL left them: {stored_before}; now all fp32")
    trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    trainer.save_model(trainer.args.output_dir)
    trainer.accelerator.print(f"Model saved to {trainer.args.output_dir}.")
    trainer.end()


if __name__ == "__main__":
    main()
