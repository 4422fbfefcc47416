"""Regenerate docs/cli-help.txt, the ``--help`` of every ``dps-gadgetron`` subcommand.

Run: ``python docs/make_cli_help.py`` (tests/test_cli_help.py fails when it is stale).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli-help.txt"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from gadgets.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width: fix it
    try:
        return _render(build_parser())
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


def _render(parser) -> str:
    parts = [parser.format_help()]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub_parser in sub.choices.items():
        parts.append(f"\n===== dps-gadgetron {name} --help =====\n" + sub_parser.format_help())
        nested = [a for a in sub_parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        for action in nested:
            for inner, inner_parser in action.choices.items():
                parts.append(f"\n===== dps-gadgetron {name} {inner} --help =====\n" + inner_parser.format_help())
    return "".join(parts)


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
