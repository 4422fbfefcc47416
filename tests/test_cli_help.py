"""Every subcommand answers --help, and docs/cli-help.txt matches the parser (regenerate with
``python docs/make_cli_help.py``)."""

import importlib.util
from pathlib import Path

import pytest

from gadgets.cli import SUBCOMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: dps-gadgetron " + name in capsys.readouterr().out


def test_docs_cli_help_is_current():
    spec = importlib.util.spec_from_file_location("make_cli_help", ROOT / "docs" / "make_cli_help.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "cli-help.txt").read_text() == module.render(), \
        "docs/cli-help.txt is stale: run python docs/make_cli_help.py"
