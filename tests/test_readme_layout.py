"""The README's layout table matches the tree: every folder it names exists, every folder of the
checkout and every package of ``models/`` is named."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def layout_paths():
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {path.rstrip("/") for row in rows for path in re.findall(r"`([^`]+)`", row.split("|")[1])}


def tracked_folders():
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked tree is unknown")
    return {Path(f).parts[0] for f in files.splitlines() if len(Path(f).parts) > 1 and not f.startswith(".")}


def test_every_named_path_exists():
    missing = sorted(p for p in layout_paths() if not (ROOT / p).exists())
    assert not missing, f"README layout names paths that do not exist: {missing}"


def test_every_folder_and_models_package_is_named():
    named = layout_paths()
    packages = {f"models/{p.name}" for p in (ROOT / "models").iterdir() if (p / "__init__.py").is_file()}
    unnamed = sorted((tracked_folders() | packages) - named)
    assert not unnamed, f"README layout does not name {unnamed}"
