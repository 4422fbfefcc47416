"""The bundled files through the chains give the recorded images (``tests/recorded_outputs.py``).

A refactor that is meant to change nothing must leave these equal to float precision;
a change that is meant to change the images records them again in the same commit.

"Float precision" is measured against the case's data scale (the largest pixel of any of
its images), not each image's own maximum: a derived series such as the per-pixel spread
of the samples is a small difference of large numbers, and a fresh install of the same
pinned torch moved it by 2e-4 of its own maximum (4e-6 of the magnitudes'), and the
DPS case (gradients through the network) by 3.2e-5 of the scale. The tolerance, 1e-4 of
the scale, stays far below the smallest real change measured: one more CG iteration in
CG-SENSE moves the images by 4.6e-3 of the scale, one more DPS step by 0.9.
"""

import numpy as np
import pytest

from recorded_outputs import CASES, RECORD, replay_case


@pytest.fixture(scope="module")
def recorded():
    with np.load(RECORD) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("name", list(CASES))
def test_chain_output_equals_the_recording(name, recorded):
    now = replay_case(name)
    before = {k: v for k, v in recorded.items() if k.startswith(name + "/")}
    assert sorted(now) == sorted(before), "the chain sent other images than it did when recorded"
    scale = max(float(np.abs(image).max()) for image in before.values())
    assert scale > 0, name
    for key, image in now.items():
        reference = before[key]
        assert image.dtype == reference.dtype and image.shape == reference.shape, key
        assert np.abs(reference).max() > 0, key
        np.testing.assert_allclose(image, reference, rtol=0, atol=1e-4 * scale, err_msg=key)
