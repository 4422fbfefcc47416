"""Small ISMRMRD raw files and chain pieces for the gadget tests (built here, nothing downloaded).

:func:`write_raw` writes a 2D multi-slice Cartesian scan: an ellipse phantom,
smooth coil maps, 2x readout oversampling, a correlated noise scan, equispaced
undersampling with ACS lines flagged as Gadgetron expects, geometry in the
acquisition headers, and optional faults (NaN lines, a slice that never
completes, a header without parallelImaging).
"""

from pathlib import Path

import ismrmrd
import numpy as np

from models.mri.fft import fft2c_np

HEADER = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels>
    <relativeReceiverNoiseBandwidth>0.793</relativeReceiverNoiseBandwidth></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{ro2}</x><y>{n}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov2}</x><y>{fov}</y><z>5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{n}</x><y>{n}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov}</x><y>{fov}</y><z>5</z></fieldOfView_mm></reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{nm1}</maximum><center>{half}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>{sm1}</maximum><center>0</center></slice>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
    {pi}
  </encoding>
</ismrmrdHeader>
"""

PI = """<parallelImaging><accelerationFactor><kspace_encoding_step_1>{r}</kspace_encoding_step_1>
      <kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor>
      <calibrationMode>{mode}</calibrationMode></parallelImaging>"""


def phantom(n: int, slice_index: int) -> np.ndarray:
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    image = ((x / 0.7) ** 2 + (y / 0.85) ** 2 < 1).astype(np.float32)
    image -= 0.5 * (((x - 0.2) / 0.2) ** 2 + ((y + 0.1 * slice_index) / 0.3) ** 2 < 1)
    return image.astype(np.complex64)


def coil_maps(coils: int, shape) -> np.ndarray:
    h, w = shape
    y, x = np.mgrid[-1:1:h * 1j, -1:1:w * 1j]
    maps = []
    for c in range(coils):
        angle = 2 * np.pi * c / coils
        cx, cy = 1.2 * np.cos(angle), 1.2 * np.sin(angle)
        maps.append(np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 1.5) * np.exp(1j * angle))
    maps = np.stack(maps)
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))).astype(np.complex64)


def write_raw(path, *, n=32, coils=4, slices=2, acceleration=1, num_acs=12, mode="inline", noise=True,
              nan_slice=None, incomplete_slice=None, parallel_imaging=True, noise_level=0.01, seed=0) -> Path:
    """Write a raw file; ``mode``: ``inline`` (ACS lines are calibration and imaging) or
    ``separate`` (ACS lines off the lattice are calibration only, as ismrmrd's Shepp-Logan tool does)."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    if path.exists():
        path.unlink()
    mixing = np.eye(coils) + 0.3 * rng.standard_normal((coils, coils))
    pi = PI.format(r=acceleration, mode="embedded" if mode == "inline" else "interleaved") if parallel_imaging else ""
    header = HEADER.format(coils=coils, ro2=2 * n, n=n, fov2=2 * 200, fov=200, nm1=n - 1, half=n // 2,
                           sm1=slices - 1, pi=pi)
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(header)
    counter = 0

    def acquisition(data, flags=(), **idx):
        nonlocal counter
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data.astype(np.complex64)))
        acq.scan_counter = counter
        counter += 1
        acq.sample_time_us = 5.0
        acq.center_sample = data.shape[1] // 2
        acq.available_channels = coils
        for flag in flags:
            acq.set_flag(flag)
        for key, value in idx.items():
            setattr(acq.idx, key, value)
        return acq

    if noise:
        samples = (rng.standard_normal((coils, 256)) + 1j * rng.standard_normal((coils, 256))) * noise_level
        ds.append_acquisition(acquisition(mixing @ samples, (ismrmrd.ACQ_IS_NOISE_MEASUREMENT,)))
    maps = coil_maps(coils, (2 * n, n))
    centre = n // 2
    acs = set(range(centre - num_acs // 2, centre - num_acs // 2 + num_acs)) if acceleration > 1 else set()
    lattice = set(range(centre % acceleration, n, acceleration))
    lines = sorted(lattice | acs)
    for s in range(slices):
        image = np.zeros((2 * n, n), np.complex64)
        image[n // 2:n // 2 + n] = phantom(n, s)
        kspace = fft2c_np(maps * image[None])  # [C, RO(2n), E1]
        use = lines[: len(lines) // 2] if incomplete_slice == s else lines
        for i, e1 in enumerate(use):
            flags = []
            if e1 in acs:
                flags.append(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING if (mode == "inline" or e1 in lattice)
                             else ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
            if i == 0:
                flags.append(ismrmrd.ACQ_FIRST_IN_SLICE)
            if i == len(lines) - 1:
                flags.append(ismrmrd.ACQ_LAST_IN_SLICE)
            data = kspace[:, :, e1]
            data = data + mixing @ ((rng.standard_normal(data.shape) + 1j * rng.standard_normal(data.shape))
                                    * noise_level)
            if nan_slice == s and i == 3:
                data = data.copy()
                data[0, 5] = np.nan
            acq = acquisition(data, flags, kspace_encode_step_1=e1, slice=s)
            acq.read_dir[:] = (1.0, 0.0, 0.0)
            acq.phase_dir[:] = (0.0, 1.0, 0.0)
            acq.slice_dir[:] = (0.0, 0.0, 1.0)
            acq.position[:] = (0.0, 0.0, 5.0 * s)
            acq.patient_table_position[:] = (0.0, 0.0, -100.0)
            ds.append_acquisition(acq)
    ds.close()
    return path


def tiny_prior(path, contrasts=("T1", "FLAIR"), size=32):
    """A randomly initialised tiny prior saved with the checkpoint module (fast DPS in tests)."""
    import torch

    from models.prior.checkpoint import save_prior
    from models.prior.contrasts import ContrastVocabulary
    from models.prior.precond import EDMPrecond
    from models.prior.unet import UNet, unet_preset

    torch.manual_seed(0)
    net = UNet(unet_preset("tiny", img_resolution=size, label_dim=len(contrasts)))
    save_prior(path, EDMPrecond(net, vocabulary=ContrastVocabulary(contrasts)), image_size=(size, size))
    return Path(path)
