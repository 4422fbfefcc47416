"""The model-size speed benchmark: its variant syntax and one timed DPS run on a tiny network."""

import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "prior_size_speed", Path(__file__).resolve().parents[1] / "benchmarks/prior_size_speed.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def test_variant_syntax_gives_unet_overrides():
    assert bench.parse_variant("cpu-small") == ("cpu-small", {})
    assert bench.parse_variant("w:model_channels=24,channel_mult=1-2-4-4,dropout=0.1") == (
        "w", {"model_channels": 24, "channel_mult": (1, 2, 4, 4), "dropout": 0.1})
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        bench.parse_variant("w:model_channels")


def test_time_variant_runs_the_product_sampler_on_the_asked_network():
    small = bench.time_variant("tiny", {}, size=32, steps=2, coils=2)
    wider = bench.time_variant("tiny", {"model_channels": 32}, size=32, steps=2, coils=2)
    assert small["nfe"] == 3 and small["seconds"] > 0
    assert wider["parameters"] > 3 * small["parameters"]
