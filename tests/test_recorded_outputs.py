"""The bundled files through the chains give the recorded images (``tests/recorded_outputs.py``).

A refactor that is meant to change nothing must leave these equal to float precision;
a change that is meant to change the images records them again in the same commit.
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
    for key, image in now.items():
        reference = before[key]
        assert image.dtype == reference.dtype and image.shape == reference.shape, key
        scale = float(np.abs(reference).max())
        assert scale > 0, key
        np.testing.assert_allclose(image, reference, rtol=0, atol=1e-5 * scale, err_msg=key)
