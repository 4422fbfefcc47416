"""``dps-gadgetron simulate``: a raw file of a real-anatomy subject that the reader reads back as written."""

import pytest

from gadgets.cli import main as cli_main
from models.data import sources as S
from models.data.ismrmrd_io import read_raw

pytestmark = pytest.mark.skipif(not S.is_available("icbm152_2009a"), reason="nilearn (ICBM152 files) not installed")


@pytest.mark.parametrize("calibration", ["embedded", "separate"])
def test_simulate_writes_the_requested_scan(tmp_path, calibration):
    out = tmp_path / "scan.h5"
    assert cli_main(["simulate", str(out), "--subject", "icbm152_2009a-0002", "--contrast", "T2", "--slices", "3", "4",
                     "--acceleration", "5", "--acs", "8", "--coils", "4", "--matrix", "32",
                     "--calibration", calibration]) == 0
    scan = read_raw(str(out), remove_oversampling=True)
    assert len(scan.slices) == 2
    header = scan.header
    assert header.encoding[0].parallelImaging.accelerationFactor.kspace_encoding_step_1 == 5
    assert header.encoding[0].parallelImaging.calibrationMode.value == calibration
    first = scan.slices[0]
    assert first.kspace.shape == (4, 32, 32)
    start, stop = first.acs_range
    assert stop - start == 8
    lattice = [i for i in range(32) if first.mask[i] and not (start <= i < stop)]
    assert lattice and all((i - 16) % 5 == 0 for i in lattice)
