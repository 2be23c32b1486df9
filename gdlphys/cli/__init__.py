"""The ``gdlphys`` command. Only this package parses arguments."""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from gdlphys.cli import bench_command, data_commands, finetune_command, learn_command, run_commands, train_command

# Errors that mean "the input is wrong": one clear line, exit status 1, no traceback.
_USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, PermissionError, KeyError, FloatingPointError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gdlphys",
        description="E(3)-equivariant machine-learned interatomic potentials: label, train, evaluate, run MD.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_commands.register(sub)
    train_command.register(sub)
    finetune_command.register(sub)
    learn_command.register(sub)
    run_commands.register(sub)
    run_commands.register_predict(sub)
    bench_command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `train` and `finetune` have their own typed parsers (YAML config + every option): hand them the rest.
    typed = {"train": train_command.run, "finetune": finetune_command.run}
    if argv and argv[0] in typed:
        handler, args = typed[argv[0]], argv[1:]
    else:
        namespace = parser.parse_args(argv)
        handler, args = namespace.handler, namespace
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("gdlphys: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as err:
        if os.environ.get("GDLPHYS_DEBUG"):
            traceback.print_exc()
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"gdlphys: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
