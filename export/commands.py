"""Offline-stage subcommands: ``pretrain``, ``train`` and ``evaluate``.

Torch is imported inside the handlers, so that the rest of the CLI starts without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subcommands: argparse._SubParsersAction) -> None:
    pretrain = subcommands.add_parser(
        "pretrain", help="CFSEM self-supervised pretraining of a skeleton encoder (runs under torchrun too)"
    )
    pretrain.add_argument("--config", type=Path, required=True, help="experiment TOML (see configs/pretrain/)")
    pretrain.add_argument("--resume", action="store_true", help="continue from the output folder's checkpoint")
    pretrain.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    pretrain.set_defaults(handler=_pretrain)

    train = subcommands.add_parser(
        "train", help="fine-tune, train from scratch or linear-probe on a benchmark (runs under torchrun too)"
    )
    train.add_argument("--config", type=Path, required=True, help="experiment TOML (see configs/train/)")
    train.add_argument("--seed", type=int, default=None, help="override the config's seed (output gets -seedN)")
    train.set_defaults(handler=_train)

    evaluate = subcommands.add_parser("evaluate", help="score a model on a dataset by a standard protocol")
    evaluate.add_argument("--data", type=Path, required=True, help="dataset file (.npz)")
    evaluate.add_argument("--split", required=True, choices=("cross-subject", "cross-view", "all"))
    evaluate.add_argument(
        "--probe",
        choices=("linear", "knn"),
        default=None,
        help="fit a probe on the frozen embeddings of the split's train part",
    )
    evaluate.add_argument("--model", default=None, help="shipped model name, .onnx file or .pt checkpoint")
    evaluate.add_argument("--json", action="store_true", help="end with one line of JSON")
    evaluate.set_defaults(handler=_evaluate)


def _pretrain(args: argparse.Namespace) -> int:
    import dataclasses

    from export.config import PretrainConfig, load_config
    from export.pretrain import run_pretrain

    config = load_config(args.config, PretrainConfig)
    if args.epochs is not None:
        config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=args.epochs))
    run_pretrain(config, resume=args.resume)
    return 0


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from export.config import TrainConfig, load_config
    from export.supervised import run_train

    config = load_config(args.config, TrainConfig)
    if args.seed is not None:
        experiment = dataclasses.replace(
            config.experiment, seed=args.seed, output=f"{config.experiment.output}-seed{args.seed}"
        )
        config = dataclasses.replace(config, experiment=experiment)
    run_train(config)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from export.evaluate import evaluate, print_result

    print_result(evaluate(args.data, args.split, args.probe, args.model), args.json)
    return 0
