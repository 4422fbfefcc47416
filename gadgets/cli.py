"""``dps-gadgetron`` command line: one entry point, one subcommand per job.

Subcommands register themselves in :data:`SUBCOMMANDS` (name -> (help, add_arguments, run));
later work adds ``replay``, ``serve``, ``train`` and ``evaluate`` the same way.
"""

import argparse
import logging
import sys

from gadgets import cli_data, cli_demo, cli_evaluate, cli_mrd_serve, cli_replay, cli_serve, cli_simulate, cli_train

SUBCOMMANDS = {
    "replay": (cli_replay.HELP, cli_replay.add_arguments, cli_replay.run),
    "serve": (cli_serve.HELP, cli_serve.add_arguments, cli_serve.run),
    "mrd-serve": (cli_mrd_serve.HELP, cli_mrd_serve.add_arguments, cli_mrd_serve.run),
    "simulate": (cli_simulate.HELP, cli_simulate.add_arguments, cli_simulate.run),
    "demo": (cli_demo.HELP, cli_demo.add_arguments, cli_demo.run),
    "train": (cli_train.HELP, cli_train.add_arguments, cli_train.run),
    "evaluate": (cli_evaluate.HELP, cli_evaluate.add_arguments, cli_evaluate.run),
    "data": (cli_data.HELP, cli_data.add_arguments, cli_data.run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dps-gadgetron",
        description="Diffusion-prior (DPS) MRI reconstruction for Gadgetron: tools and offline runs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub_parser)
        sub_parser.set_defaults(run=run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
