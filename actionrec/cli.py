"""``actionrec``: one CLI, a subcommand per job.

Each stage registers its own subcommands (``skeleton.commands`` for data, ``service.commands``
for serving, ``export.commands`` for training and export); their heavy imports happen inside
the handlers, so that ``actionrec info`` does not load torch and ``actionrec serve`` never does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from export import commands as offline_commands
from service import commands as online_commands
from skeleton import commands as data_commands
from skeleton.errors import InputError


class _Parser(argparse.ArgumentParser):
    """Refuses a malformed command line in one line, as every other refusal of the CLI reads,
    instead of the whole usage text before it (serve's runs to 40 lines)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="actionrec",
        description="Skeleton-based action recognition: datasets, pose extraction, training, serving.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_commands.register(subcommands)
    online_commands.register(subcommands)
    offline_commands.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(["actionrec", args.command] + ([args.verb] if getattr(args, "verb", None) else []))
    try:
        return int(args.handler(args) or 0)
    except InputError as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the output stopped reading (`| head`): end quietly, as other command-line
        # tools do, with stdout sent nowhere so that flushing it at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
