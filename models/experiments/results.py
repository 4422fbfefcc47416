"""``results.json``: everything an experiment run measured, rewritten after every unit of work.

Layout (JSON object)::

    format, plan {name, file, sha256}, complete (bool), updated (UTC ISO time),
    provenance {commands: [...], hardware: {...}},
    trainings {NAME: {mode, step, total_steps, finished, best_step, best_score, run_dir}},
    evaluation {"R4": {KEY: ENTRY}}        KEY: "zero_filled", "cg_sense", "cs", "bart", "method4", ...
    paired_tests {"R4": {"4 vs 3": {...}}},
    ablation {CELL: ENTRY + {lr, length, steps}},
    zeta_sweep {"R4": {values, nrmse, nrmse_std, best}},
    skipped {BASELINE: reason}              e.g. bart when it is not installed

An ENTRY holds mean / std of NRMSE, PSNR, SSIM and seconds, the per-slice lists, a
``fingerprint`` of what produced it (checkpoint digest and settings: an entry whose
fingerprint still matches is not recomputed), and ``partial: true`` when it comes from a
training that has not reached its budget. The file is replaced atomically, so an
interrupted run leaves the last complete version.
"""

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from models.errors import ReconInputError

FORMAT = 1
RESULTS_FILE = "results.json"
SECTIONS = ("trainings", "evaluation", "paired_tests", "ablation", "zeta_sweep")


def fingerprint(**parts) -> str:
    """Short stable digest of JSON-serialisable ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ResultsFile:
    """The results of one plan in one folder; :meth:`save` after every change."""

    def __init__(self, path, plan):
        self.path = Path(path)
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise ReconInputError(f"{self.path} is not valid JSON ({exc}); move it away to start afresh") from None
            if self.data.get("plan", {}).get("name") != plan.name:
                raise ReconInputError(f"{self.path} holds results of plan {self.data.get('plan', {}).get('name')!r}, "
                                      f"not {plan.name!r}: use another results folder")
        else:
            self.data = {"format": FORMAT}
        self.data["plan"] = {"name": plan.name, "file": plan.path, "sha256": plan.sha256}
        for key in SECTIONS + ("skipped",):
            self.data.setdefault(key, {})
        self.data.setdefault("provenance", {"commands": [], "hardware": {}})
        self.data.setdefault("complete", False)

    # ------------------------------------------------------------------ access
    def section(self, name: str, sub: Optional[str] = None) -> dict:
        part = self.data[name]
        if sub is not None:
            part = part.setdefault(sub, {})
        return part

    def cached(self, name: str, sub: Optional[str], key: str, fp: str) -> Optional[dict]:
        """The stored entry if its fingerprint is ``fp`` (nothing to recompute), else None."""
        entry = self.section(name, sub).get(key)
        return entry if entry is not None and entry.get("fingerprint") == fp else None

    def put(self, name: str, sub: Optional[str], key: str, entry: dict) -> None:
        """Store one entry and save at once (merged into what is on disk, see :meth:`_merge_from_disk`)."""
        self._merge_from_disk()
        self.section(name, sub)[key] = entry
        self.save()

    def set_complete(self, complete: bool) -> None:
        self._merge_from_disk()
        self.data["complete"] = bool(complete)
        self.save()

    def add_command(self, command: str, hardware: dict) -> None:
        self._merge_from_disk()
        commands = self.data["provenance"]["commands"]
        if command and (not commands or commands[-1] != command):
            commands.append(command)
        self.data["provenance"]["hardware"] = hardware
        self.save()

    def _merge_from_disk(self) -> None:
        """Take up what another process (e.g. ``--no-train`` scoring beside a long training run) saved
        since we last saved. Every change of ours is saved at once, so what differs on disk is newer."""
        try:
            disk = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        for name in SECTIONS + ("skipped",):
            self.data[name] = disk.get(name, {})
        mine = self.data["provenance"]["commands"]
        theirs = disk.get("provenance", {}).get("commands", [])
        self.data["provenance"]["commands"] = theirs + [c for c in mine if c not in theirs]

    # ------------------------------------------------------------------ I/O
    def save(self) -> None:
        self.data["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=False) + "\n")
        os.replace(tmp, self.path)


def read_results(path) -> dict:
    """Read a ``results.json`` (for the report)."""
    path = Path(path)
    if not path.is_file():
        raise ReconInputError(f"no results file {path}: run the plan first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReconInputError(f"{path} is not valid JSON ({exc})") from None
