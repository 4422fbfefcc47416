"""Simulate a scanner's ISMRMRD raw file from complex images.

Forward model per slice (our layout, see :mod:`models.mri.fft`; ``H`` readout,
``W`` phase encode):

  1. coil images ``S_c x`` on the reconstruction grid ``[C, H, W]``;
  2. zero-padded in the readout direction to the oversampled field of view
     ``[C, f H, W]`` (``f`` = readout oversampling, 2 on a scanner), centre kept;
  3. centred orthonormal 2D FFT;
  4. correlated complex Gaussian receiver noise with covariance ``Psi`` (C x C)
     per k-space sample;
  5. only the acquired phase-encode lines are written (prospective
     undersampling), each as one ISMRMRD acquisition ``[C, f H]``.

A noise scan comes first: ``ACQ_IS_NOISE_MEASUREMENT`` acquisitions with their
own dwell time. Their covariance is ``Psi * rnb * dwell / noise_dwell`` so that
:func:`models.mri.prewhiten.noise_scale_factor` (Gadgetron's NoiseAdjust
convention; ``rnb`` = relativeReceiverNoiseBandwidth) carries it back to ``Psi``.

SNR: mean root-sum-of-squares magnitude of the noiseless coil images over
pixels above 10 % of their maximum, divided by the per-sample complex noise std
``sqrt(mean(diag(Psi)))`` (as :func:`models.mri.coil_simulation.simulate_kspace`).

Calibration (ACS) lines, ``calibration_mode``:
  - ``"embedded"``: ACS lines acquired in-line; those on the imaging lattice are
    flagged ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``, the others
    ``ACQ_IS_PARALLEL_CALIBRATION`` (Siemens "integrated" GRAPPA reference).
  - ``"separate"``: a reference block of ACS lines (own noise) before each
    slice's imaging lines, all flagged ``ACQ_IS_PARALLEL_CALIBRATION``; the
    imaging lines are the lattice alone.

File format: ISMRMRD 1.x HDF5 written with the pinned ``ismrmrd`` package
(``ismrmrd.Dataset``, ``ismrmrd.xsd``), readable by the ISMRMRD C++ tools.
"""

import logging
import math
import os
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple, Union

import ismrmrd
import numpy as np
import torch

from models.data.ismrmrd_io import SliceGeometry, flag_bit
from models.errors import MaskError, ReconInputError, ShapeError
from models.mri.checks import require_finite
from models.mri.fft import fft2c
from models.mri.masks import acs_window, create_mask_func

log = logging.getLogger(__name__)

GYROMAGNETIC_RATIO_HZ_PER_T = 42.577478e6  # 1H, CODATA 2018
TIME_STAMP_TICK_MS = 2.5  # Siemens convention for ISMRMRD acquisition_time_stamp


@dataclass(frozen=True)
class RawProtocol:
    """Acquisition protocol of a simulated scan (defaults: an axial 2D FLAIR at 3 T).

    Units: mm, ms (TR/TE/TI), degrees, microseconds (dwell times), Tesla.
    """

    acceleration: int = 4
    num_acs: int = 24
    mask_kind: str = "equispaced"  # any kind of models.mri.masks.create_mask_func
    calibration_mode: str = "embedded"  # "embedded" or "separate"
    fully_sampled: bool = False  # write every line (no calibration flags, no parallelImaging)
    readout_oversampling: int = 2
    fov_mm: Tuple[float, float] = (220.0, 220.0)  # reconstructed FOV (readout, phase)
    slice_thickness_mm: float = 5.0
    slice_gap_mm: float = 1.0
    centre_mm: Tuple[float, float, float] = (0.0, -10.0, 20.0)  # centre of the slice stack
    # Patient coordinates (LPS, as ISMRMRD/DICOM). Defaults match models.data.anatomy's
    # axial display: H index (readout) runs anterior -> posterior, W index (phase)
    # patient right -> left; slice_dir = read_dir x phase_dir (right-handed), so the
    # slice index increases towards the feet.
    read_dir: Tuple[float, float, float] = (0.0, 1.0, 0.0)
    phase_dir: Tuple[float, float, float] = (1.0, 0.0, 0.0)
    slice_dir: Tuple[float, float, float] = (0.0, 0.0, -1.0)
    patient_table_position: Tuple[float, float, float] = (0.0, 0.0, -1200.0)
    patient_position: str = "HFS"
    field_strength_T: float = 3.0
    dwell_time_us: float = 10.0  # imaging readout dwell (sample_time_us)
    noise_dwell_time_us: float = 5.0
    num_noise_acquisitions: int = 16
    receiver_noise_bandwidth: float = 0.793
    TR_ms: float = 9000.0
    TE_ms: float = 120.0
    TI_ms: float = 2500.0
    flip_angle_deg: float = 90.0
    sequence_type: str = "TurboSpinEcho"
    protocol_name: str = "t2_tirm_tra_dark-fluid_sim"
    series_description: str = "FLAIR (simulated)"
    patient_id: str = "SIM-0001"
    measurement_uid: int = 1
    start_time_s: float = 36000.0  # acquisition_time_stamp origin (seconds of the day)
    echo_train_length: int = 16  # lines per TR (sets the time stamps and the header's echoTrainLength)

    def validate(self):
        if self.calibration_mode not in ("embedded", "separate"):
            raise ReconInputError(f"calibration_mode must be 'embedded' or 'separate', got {self.calibration_mode!r}")
        if int(self.readout_oversampling) != self.readout_oversampling or self.readout_oversampling < 1:
            raise ReconInputError(f"readout_oversampling must be a positive integer, got {self.readout_oversampling}")
        if self.dwell_time_us <= 0 or self.noise_dwell_time_us <= 0 or self.receiver_noise_bandwidth <= 0:
            raise ReconInputError("dwell times and receiver noise bandwidth must be positive")
        if self.num_noise_acquisitions < 1:
            raise ReconInputError("at least one noise acquisition is needed for pre-whitening")


class LinePlan(NamedTuple):
    """Which phase-encode lines a slice acquires (all bool ``[W]``)."""

    imaging: torch.Tensor  # lines that go to the imaging data
    calibration: torch.Tensor  # ACS lines (reference data); empty when fully sampled
    lattice: torch.Tensor  # the regular imaging lattice (all lines when fully sampled)


class RawSimulation(NamedTuple):
    """What was written, for tests and scoring (torch, complex64)."""

    path: str
    images: torch.Tensor  # [S, H, W] source images
    maps: torch.Tensor  # [S, C, H, W] coil sensitivities
    kspace: torch.Tensor  # [S, C, f H, W] fully sampled noisy k-space of the oversampled FOV
    plan: LinePlan
    noise_covariance: torch.Tensor  # [C, C] per-sample covariance of the imaging data
    noise_std: float  # sqrt(mean(diag(noise_covariance)))
    header: "ismrmrd.xsd.ismrmrdHeader"


def _as_generator(generator: Union[None, int, torch.Generator]) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    return torch.Generator().manual_seed(0 if generator is None else int(generator))


def _complex_normal(shape, generator) -> torch.Tensor:
    """Circular complex normal, ``E|z|^2 = 1``."""
    return torch.view_as_complex(torch.randn(tuple(shape) + (2,), generator=generator)) / math.sqrt(2)


def random_noise_covariance(num_coils: int, generator: Union[None, int, torch.Generator] = None,
                            coupling: float = 0.3, gain_spread: float = 0.3) -> torch.Tensor:
    """A random Hermitian positive-definite receiver noise covariance ``[C, C]`` complex64.

    ``Psi = M M^H`` with ``M = G (I + coupling * Z / sqrt(C))``: ``G`` diagonal channel
    gains uniform in ``1 +- gain_spread``, ``Z`` complex normal (inter-channel coupling,
    e.g. through shared preamplifier ground). Scaled to ``mean(diag(Psi)) = 1``.
    """
    if num_coils < 1:
        raise ShapeError(f"random_noise_covariance: need at least one coil, got {num_coils}")
    generator = _as_generator(generator)
    gains = 1 + gain_spread * (2 * torch.rand(num_coils, generator=generator, dtype=torch.float64) - 1)
    mix = torch.eye(num_coils, dtype=torch.complex128) + coupling * _complex_normal(
        (num_coils, num_coils), generator).to(torch.complex128) / math.sqrt(num_coils)
    mix = gains.to(torch.complex128).unsqueeze(1) * mix
    psi = mix @ mix.conj().T
    psi = psi / psi.diagonal().real.mean()
    return psi.to(torch.complex64)


def plan_lines(protocol: RawProtocol, num_lines: int,
               generator: Optional[torch.Generator] = None) -> LinePlan:
    """The acquired lines of one slice from the protocol's mask (:mod:`models.mri.masks`)."""
    if protocol.fully_sampled:
        every = torch.ones(num_lines, dtype=torch.bool)
        return LinePlan(every, torch.zeros(num_lines, dtype=torch.bool), every)
    mask = create_mask_func(protocol.mask_kind, protocol.acceleration, protocol.num_acs)(num_lines, generator).mask
    acs = torch.zeros(num_lines, dtype=torch.bool)
    start, stop = acs_window(num_lines, protocol.num_acs)
    acs[start:stop] = True
    if protocol.mask_kind == "equispaced":
        lattice = create_mask_func("equispaced", protocol.acceleration, 0)(num_lines, generator).mask
        imaging = lattice.clone()
    else:  # irregular masks: every acquired line images; a separate reference scan takes the ACS
        lattice = mask.clone()
        imaging = mask & ~acs if protocol.calibration_mode == "separate" else mask.clone()
    if not acs.any():
        raise MaskError("prospective undersampling needs num_acs > 0 calibration lines")
    return LinePlan(imaging, acs, lattice)


def slice_geometries(protocol: RawProtocol, num_slices: int) -> list:
    """Per-slice :class:`SliceGeometry`: slice ``s`` sits ``(s - (S - 1) / 2) * (thickness + gap)``
    mm along ``slice_dir`` from ``centre_mm``."""
    spacing = protocol.slice_thickness_mm + protocol.slice_gap_mm
    out = []
    for s in range(num_slices):
        shift = (s - (num_slices - 1) / 2) * spacing
        position = tuple(float(c + shift * d) for c, d in zip(protocol.centre_mm, protocol.slice_dir))
        out.append(SliceGeometry(position, tuple(protocol.read_dir), tuple(protocol.phase_dir),
                                 tuple(protocol.slice_dir), tuple(protocol.patient_table_position)))
    return out


def build_header(protocol: RawProtocol, num_coils: int, matrix: Tuple[int, int],
                 num_slices: int) -> "ismrmrd.xsd.ismrmrdHeader":
    """The ISMRMRD XML header of a simulated 2D Cartesian multi-slice scan.

    ``matrix = (H, W)`` is the reconstruction matrix; the encoded readout is
    ``readout_oversampling * H`` with a proportionally larger field of view.
    The optional ``<version>`` element is left out on purpose: the ISMRMRD C++
    library (hence Gadgetron) rejects a header whose version differs from its own
    schema version, and accepts one without.
    """
    x = ismrmrd.xsd
    height, width = matrix
    f = int(protocol.readout_oversampling)
    fov_ro, fov_pe = protocol.fov_mm
    thick = protocol.slice_thickness_mm

    def limit(maximum, center=0):
        return x.limitType(minimum=0, maximum=int(maximum), center=int(center))

    limits = x.encodingLimitsType(
        kspace_encoding_step_0=limit(f * height - 1, f * height // 2),
        kspace_encoding_step_1=limit(width - 1, width // 2),
        kspace_encoding_step_2=limit(0), average=limit(0), slice=limit(num_slices - 1), contrast=limit(0),
        phase=limit(0), repetition=limit(0), set=limit(0), segment=limit(0))
    encoding = x.encodingType(
        encodedSpace=x.encodingSpaceType(matrixSize=x.matrixSizeType(x=f * height, y=width, z=1),
                                         fieldOfView_mm=x.fieldOfViewMm(x=f * fov_ro, y=fov_pe, z=thick)),
        reconSpace=x.encodingSpaceType(matrixSize=x.matrixSizeType(x=height, y=width, z=1),
                                       fieldOfView_mm=x.fieldOfViewMm(x=fov_ro, y=fov_pe, z=thick)),
        encodingLimits=limits,
        trajectory=x.trajectoryType.CARTESIAN,
        echoTrainLength=int(protocol.echo_train_length),
    )
    if not protocol.fully_sampled:
        encoding.parallelImaging = x.parallelImagingType(
            accelerationFactor=x.accelerationFactorType(kspace_encoding_step_1=int(round(protocol.acceleration)),
                                                        kspace_encoding_step_2=1),
            calibrationMode=x.calibrationModeType(protocol.calibration_mode))
    return x.ismrmrdHeader(
        subjectInformation=x.subjectInformationType(patientID=protocol.patient_id, patientGender="O"),
        measurementInformation=x.measurementInformationType(
            measurementID=f"{protocol.measurement_uid}_sim", patientPosition=x.patientPositionType(
                protocol.patient_position),
            protocolName=protocol.protocol_name, sequenceName=protocol.sequence_type,
            seriesDescription=protocol.series_description, initialSeriesNumber=1),
        acquisitionSystemInformation=x.acquisitionSystemInformationType(
            systemVendor="dps-gadgetron", systemModel="raw_simulator",
            systemFieldStrength_T=float(protocol.field_strength_T),
            relativeReceiverNoiseBandwidth=float(protocol.receiver_noise_bandwidth),
            receiverChannels=int(num_coils),
            coilLabel=[x.coilLabelType(coilNumber=c, coilName=f"H{c + 1:02d}") for c in range(num_coils)],
            institutionName="simulation"),
        experimentalConditions=x.experimentalConditionsType(
            H1resonanceFrequency_Hz=int(round(GYROMAGNETIC_RATIO_HZ_PER_T * protocol.field_strength_T))),
        encoding=[encoding],
        sequenceParameters=x.sequenceParametersType(
            TR=[float(protocol.TR_ms)], TE=[float(protocol.TE_ms)], TI=[float(protocol.TI_ms)],
            flipAngle_deg=[float(protocol.flip_angle_deg)], sequence_type=protocol.sequence_type),
    )


def _stack_inputs(images, maps, num_coils, generator):
    images = torch.as_tensor(images)
    if images.ndim == 2:
        images = images.unsqueeze(0)
    if images.ndim != 3:
        raise ShapeError(f"simulate_raw: images must be [S, H, W], got shape {tuple(images.shape)}")
    images = images.to(torch.complex64)
    require_finite("images", images)
    num_slices, height, width = images.shape
    if maps is None:
        from models.mri.coil_simulation import simulate_coil_maps
        maps = simulate_coil_maps(num_coils, (height, width), generator=generator)
    maps = torch.as_tensor(maps).to(torch.complex64)
    if maps.ndim == 3:
        maps = maps.unsqueeze(0).expand(num_slices, -1, -1, -1)
    if maps.ndim != 4 or maps.shape[0] != num_slices or tuple(maps.shape[-2:]) != (height, width):
        raise ShapeError(f"simulate_raw: maps must be [C, H, W] or [S, C, H, W] matching images {tuple(images.shape)}, "
                         f"got {tuple(maps.shape)}")
    require_finite("maps", maps)
    return images, maps.contiguous()


def _oversampled_kspace(coil_images: torch.Tensor, factor: int) -> torch.Tensor:
    """``[..., H, W]`` -> k-space of the readout-padded FOV ``[..., f H, W]``."""
    height = coil_images.shape[-2]
    padded = coil_images.new_zeros(coil_images.shape[:-2] + (factor * height, coil_images.shape[-1]))
    start = factor * height // 2 - height // 2
    padded[..., start:start + height, :] = coil_images
    return fft2c(padded)


def _acquisition(data: np.ndarray, flags: int, *, e1: int, slice_index: int, sample_time_us: float,
                 geometry: SliceGeometry, scan_counter: int, time_stamp: int, measurement_uid: int):
    channels, samples = data.shape
    acq = ismrmrd.Acquisition.from_array(
        np.ascontiguousarray(data, dtype=np.complex64),
        flags=flags, measurement_uid=measurement_uid, scan_counter=scan_counter,
        acquisition_time_stamp=time_stamp, center_sample=samples // 2, sample_time_us=sample_time_us,
        position=geometry.position, read_dir=geometry.read_dir, phase_dir=geometry.phase_dir,
        slice_dir=geometry.slice_dir, patient_table_position=geometry.patient_table_position)
    for c in range(channels):
        acq.setChannelActive(c)
    acq.idx.kspace_encode_step_1 = e1
    acq.idx.slice = slice_index
    return acq


def simulate_raw(path: str, images: torch.Tensor, maps: Optional[torch.Tensor] = None, *,
                 protocol: RawProtocol = RawProtocol(), num_coils: int = 8, snr: float = 40.0,
                 noise_covariance: Optional[torch.Tensor] = None,
                 generator: Union[None, int, torch.Generator] = None) -> RawSimulation:
    """Write an ISMRMRD raw HDF5 file of a 2D multi-slice Cartesian scan (see module docstring).

    Args:
        path: output file (overwritten).
        images: ``[S, H, W]`` (or ``[H, W]``) complex source images on the
            reconstruction grid; ``H`` readout, ``W`` phase encode.
        maps: ``[S, C, H, W]`` or ``[C, H, W]`` coil sensitivities; ``None`` draws
            ``num_coils`` birdcage-like maps (:func:`models.mri.coil_simulation.simulate_coil_maps`).
        protocol: acquisition protocol (acceleration, ACS, calibration mode, geometry...).
        num_coils: coils when ``maps`` is ``None``.
        snr: signal-to-noise ratio as defined in the module docstring (> 0).
        noise_covariance: ``[C, C]`` relative receiver noise covariance (rescaled to the
            SNR); ``None`` draws :func:`random_noise_covariance`.
        generator: ``torch.Generator`` or seed; draws (in this order) maps, noise
            covariance, noise scan, imaging noise, reference noise, so that a fully
            sampled and an undersampled file from one seed share every sample they
            both hold.
    Returns:
        :class:`RawSimulation`.
    """
    protocol.validate()
    if not snr > 0:
        raise ReconInputError(f"simulate_raw: snr must be positive, got {snr}")
    generator = _as_generator(generator)
    images, maps = _stack_inputs(images, maps, num_coils, generator)
    num_slices, height, width = images.shape
    channels = maps.shape[1]
    factor = int(protocol.readout_oversampling)
    if (factor * height - height) % 2:
        raise ShapeError(f"simulate_raw: readout size {height} cannot be centred in {factor * height} samples")

    if noise_covariance is None:
        noise_covariance = random_noise_covariance(channels, generator)
    psi = torch.as_tensor(noise_covariance).to(torch.complex128)
    if psi.shape != (channels, channels):
        raise ShapeError(f"simulate_raw: noise covariance must be [{channels}, {channels}], got {tuple(psi.shape)}")
    coil_images = maps * images.unsqueeze(1)
    rss = coil_images.abs().pow(2).sum(dim=1).sqrt()
    signal = float(rss[rss > 0.1 * rss.max()].mean())
    std = signal / snr
    psi = psi / psi.diagonal().real.mean() * std ** 2
    try:
        chol = torch.linalg.cholesky(psi)
    except RuntimeError:
        raise ReconInputError("simulate_raw: noise covariance is not positive definite") from None

    readout = factor * height
    noise_scale = math.sqrt(protocol.receiver_noise_bandwidth * protocol.dwell_time_us / protocol.noise_dwell_time_us)
    noise_scan = noise_scale * (chol @ _complex_normal((channels, protocol.num_noise_acquisitions * readout),
                                                        generator).to(torch.complex128))
    clean = _oversampled_kspace(coil_images, factor)
    noise = torch.einsum("cd,sdhw->schw", chol, _complex_normal(clean.shape, generator).to(torch.complex128))
    kspace = (clean + noise.to(torch.complex64)).contiguous()
    plan = plan_lines(protocol, width, generator)
    reference = None
    if protocol.calibration_mode == "separate" and not protocol.fully_sampled:
        ref_noise = torch.einsum("cd,sdhw->schw", chol, _complex_normal(clean.shape, generator).to(torch.complex128))
        reference = (clean + ref_noise.to(torch.complex64)).numpy()

    header = build_header(protocol, channels, (height, width), num_slices)
    geometries = slice_geometries(protocol, num_slices)
    _write(path, header, protocol, kspace.numpy(), reference, noise_scan.to(torch.complex64).numpy(), plan,
           geometries)
    log.info("wrote %s: %d slice(s), %d coils, %d of %d lines, SNR %.1f", path, num_slices, channels,
             int((plan.imaging | plan.calibration).sum()), width, snr)
    return RawSimulation(str(path), images, maps, kspace, plan, psi.to(torch.complex64), std, header)


def _write(path, header, protocol, kspace, reference, noise_scan, plan, geometries):
    num_slices, channels, readout, width = kspace.shape
    imaging, calibration, lattice = (plan.imaging.numpy(), plan.calibration.numpy(), plan.lattice.numpy())
    if os.path.exists(path):
        os.remove(path)

    def tick(ms):  # acquisition_time_stamp of a time (ms) after start_time_s
        return int(round((protocol.start_time_s * 1000 + ms) / TIME_STAMP_TICK_MS))
    common = dict(measurement_uid=protocol.measurement_uid)
    acquisitions = []
    noise_geometry = geometries[num_slices // 2]
    for n, block in enumerate(np.split(noise_scan, protocol.num_noise_acquisitions, axis=1)):
        acquisitions.append(_acquisition(
            block, flag_bit(ismrmrd.ACQ_IS_NOISE_MEASUREMENT), e1=0, slice_index=0,
            sample_time_us=protocol.noise_dwell_time_us, geometry=noise_geometry, scan_counter=0,
            time_stamp=tick(n * readout * protocol.noise_dwell_time_us / 1000), **common))
    elapsed_ms = 1000.0
    for s in range(num_slices):
        lines = []  # (e1, flags, data)
        if reference is not None:
            for e1 in np.flatnonzero(calibration):
                lines.append((int(e1), flag_bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION), reference[s, :, :, e1]))
        for e1 in range(width):
            if reference is None and calibration[e1]:
                kind = (ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING if lattice[e1]
                        else ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
                lines.append((e1, flag_bit(kind), kspace[s, :, :, e1]))
            elif imaging[e1]:
                lines.append((e1, 0, kspace[s, :, :, e1]))
        for i, (e1, flags, data) in enumerate(lines):
            if i == 0:
                flags |= flag_bit(ismrmrd.ACQ_FIRST_IN_SLICE) | flag_bit(ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1)
            if i == len(lines) - 1:
                flags |= flag_bit(ismrmrd.ACQ_LAST_IN_SLICE) | flag_bit(ismrmrd.ACQ_LAST_IN_ENCODE_STEP1)
            acquisitions.append(_acquisition(
                data, flags, e1=e1, slice_index=s, sample_time_us=protocol.dwell_time_us, geometry=geometries[s],
                scan_counter=0, time_stamp=tick(elapsed_ms), **common))
            elapsed_ms += protocol.TR_ms / protocol.echo_train_length
    acquisitions[-1].flags |= flag_bit(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    with ismrmrd.Dataset(str(path), "dataset", mode="w") as dataset:
        dataset.write_xml_header(ismrmrd.xsd.ToXML(header).encode("utf-8"))
        for counter, acq in enumerate(acquisitions, start=1):
            acq.scan_counter = counter
            dataset.append_acquisition(acq)


def make_raw_file(path: str, matrix: Tuple[int, int] = (64, 64), num_coils: int = 8, num_slices: int = 1,
                  acceleration: int = 4, num_acs: int = 16, calibration_mode: str = "embedded",
                  fully_sampled: bool = False, snr: float = 40.0, seed: int = 0,
                  images: Optional[torch.Tensor] = None, **protocol_options) -> RawSimulation:
    """A small raw file of the brain phantom (:func:`models.mri.coil_simulation.brain_phantom`),
    for test fixtures and examples.

    ``images`` (``[S, H, W]`` complex) replaces the phantom; ``protocol_options`` go to
    :class:`RawProtocol`. Deterministic for a given ``seed``.
    """
    generator = torch.Generator().manual_seed(int(seed))
    if images is None:
        from models.mri.coil_simulation import brain_phantom
        images = torch.stack([brain_phantom(tuple(matrix), generator=generator).image for _ in range(num_slices)])
    protocol = RawProtocol(acceleration=acceleration, num_acs=num_acs, calibration_mode=calibration_mode,
                           fully_sampled=fully_sampled, **protocol_options)
    return simulate_raw(path, images, protocol=protocol, num_coils=num_coils, snr=snr, generator=generator)
