"""The chains' images of the bundled raw files, recorded so that a refactor can prove it changed nothing.

``python tests/recorded_outputs.py`` replays each case below through ``dps-gadgetron
replay`` (one CPU thread, as the test suite runs) and writes every image of every
series to ``tests/data/recorded_chain_outputs.npz``; ``tests/test_recorded_outputs.py``
replays them again and compares. Record again only when a change is *meant* to change
the images, and say so in the commit.

The cases are cut to a few sampler steps (the sampler's arithmetic, not its quality, is
what is recorded) and cover every method and both samplers.
"""

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "models" / "data" / "examples"
CONFIG = ROOT / "config_xml"
RECORD = Path(__file__).resolve().parent / "data" / "recorded_chain_outputs.npz"

#: name -> (raw file, chain, property overrides)
CASES = {
    "r4_dds": ("flair_R4.h5", "dps_r4.xml", {"num_steps": "3", "num_samples": "2"}),
    "r4_dps": ("flair_R4.h5", "dps_r4.xml", {"sampler": "dps", "num_steps": "3", "num_samples": "1"}),
    "r6_dds": ("flair_R6.h5", "dps_r6.xml", {"num_steps": "3", "num_samples": "1"}),
    "r6_dds_shifted_tiles": ("flair_R6.h5", "dps_r6.xml", {"num_steps": "3", "num_samples": "1",
                                                            "patch_tiling": "shifted"}),
    "r6_cg_sense": ("flair_R6.h5", "dps_r6.xml", {"method": "cg_sense"}),
    "r6_cs": ("flair_R6.h5", "dps_r6.xml", {"method": "cs"}),
    "r4_zero_filled": ("flair_R4.h5", "dps_r4.xml", {"method": "zero_filled"}),
    "full_reference": ("flair_full.h5", "reference_fully_sampled.xml", {}),
}


def replay_case(name: str) -> dict:
    """``{"<case>/s<series>_<n>": image array}`` for one case, in the order the chain sent them."""
    from gadgets.replay import replay

    raw, chain, props = CASES[name]
    images = []
    with tempfile.TemporaryDirectory() as tmp:
        summary = replay(EXAMPLES / raw, CONFIG / chain, Path(tmp) / "out.h5",
                         {f"gadgets.dps_recon.{k}": v for k, v in props.items()}, progress=False,
                         on_image=lambda image: images.append(image))
    if not summary.ok:
        raise RuntimeError(f"{name}: {summary.line()} {summary.errors}")
    return {f"{name}/s{int(im.image_series_index)}_{i}": np.array(im.data, copy=True) for i, im in enumerate(images)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RECORD)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    arrays = {}
    for name in CASES:
        arrays.update(replay_case(name))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{len(arrays)} images of {len(CASES)} cases -> {args.out}")


if __name__ == "__main__":
    main()
