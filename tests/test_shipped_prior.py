"""The shipped prior: it loads, knows the target and source contrasts, and the default chain
replays the bundled scan with it (few steps, to stay fast)."""

import numpy as np
import pytest

from models.prior.shipped import shipped_checkpoint
from models.prior.checkpoint import load_prior
from tests.test_replay import CONFIG, read_images, replay

EXAMPLES = CONFIG.parent / "models" / "data" / "examples"


@pytest.fixture(scope="module")
def shipped():
    return load_prior(shipped_checkpoint())


def test_shipped_prior_metadata(shipped):
    precond, meta = shipped
    assert meta.contrasts[-1] == "FLAIR" and {"T1", "T2", "PD", "T1post"} <= set(meta.contrasts)
    assert meta.training["mode"] == "finetune" and meta.steps > 0 and meta.weights == "ema"
    assert meta.image_size == [128, 128]
    assert precond.normalization.percentile == 99.0


def test_default_chain_replays_the_bundled_scan(tmp_path):
    out = tmp_path / "images.h5"
    rc = replay(EXAMPLES / "flair_R4.h5", CONFIG / "dps_r4.xml", out,
                overrides=["gadgets.dps_recon.num_steps=3", "gadgets.dps_recon.device=cpu"])
    assert rc == 0
    images = read_images(out)
    assert len(images) == 2 and all(im.meta["GADGETRON_DataRole"] == "Image" for im in images)
    truth = np.load(EXAMPLES / "flair_truth.npz")["image"]
    for image in images:
        data = image.data.squeeze()
        assert data.shape == truth.shape[1:] and np.isfinite(data).all() and data.max() > 0
        assert "dps" in " ".join(image.meta["GADGETRON_ImageComment"]).lower()
