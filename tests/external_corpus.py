"""An independent writer of raw ISMRMRD files: the corpus the chains are checked on.

Nothing here comes from this project's simulator (``models/data/raw_simulator.py``)
or from any ``models`` / ``gadgets`` module: plain numpy and ismrmrd-python, with

- its own coil model: ``coils`` circular loop coils on a ring around the head,
  sensitivities from the Biot-Savart field of a loop in its plane (magnitude falls
  with distance, phase turns around the loop), **not** normalised;
- its own noise model: a random full noise covariance (correlated channels,
  unequal noise per channel), drawn per file;
- its own object: a numpy brain-like phantom (skull, CSF, grey / white matter with
  folded cortex, ventricles, a lesion), or any complex image handed in;
- acquisitions flagged the way Siemens data converted to ISMRMRD are:
  ``embedded`` integrated ACS (lines on the undersampling lattice
  ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``, the others ``ACQ_IS_PARALLEL_CALIBRATION``),
  or a ``separate`` reference scan sent before the imaging lines; partial Fourier in
  the phase direction (encoding limits not centred), asymmetric echo
  (``center_sample`` off the middle), several averages, several slices, a noise scan
  with its own dwell time, 2x readout oversampling.

Every file comes with a sidecar ``<name>.truth.npz``: the noise-free prewhitened
root-sum-of-squares image per slice (readout oversampling removed; the figure of
merit's reference), the noise-free object, and what was written (which lines, which
readout samples, which were calibration-only), so tests can check the chains' masks
against what the writer did, not against what a reader infers.

Run ``python tests/external_corpus.py OUT_DIR [--cases NAME ...]`` to write the
benchmark corpus (:data:`CASES`).
"""

import argparse
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import ismrmrd
import numpy as np

log = logging.getLogger("external_corpus")


@dataclass(frozen=True)
class Case:
    """One raw file: geometry, acquisition and noise."""

    name: str
    readout: int = 128  # recon matrix x (readout), before 2x oversampling
    lines: int = 128  # recon matrix y (phase-encode lines)
    coils: int = 12
    slices: int = 1
    acceleration: int = 4
    acs: int = 24
    calibration: str = "embedded"  # embedded | separate
    partial_fourier: float = 1.0  # fraction of phase-encode lines covered (6/8 = 0.75)
    asymmetric_echo: float = 1.0  # fraction of the readout acquired (the early part is missing)
    averages: int = 1
    snr: float = 30.0  # mean object magnitude in the RSS image / noise std per sample
    noise_dwell_us: float = 10.0
    dwell_us: float = 5.0
    seed: int = 0


#: The benchmark corpus (issue: every measured line in the data term).
CASES = {c.name: c for c in [
    Case("int_acs_12c_snr30"),
    Case("int_acs_12c_snr30_r2", acceleration=2, seed=11),
    Case("int_acs_12c_snr30_r5", acceleration=5, seed=12),
    Case("int_acs_12c_snr30_r6", acceleration=6, seed=13),
    Case("int_acs_8c_snr10", coils=8, snr=10.0, seed=1),
    Case("int_acs_16c_snr100", coils=16, snr=100.0, seed=2),
    Case("int_acs_32c_snr30", coils=32, seed=3),
    Case("separate_ref_12c", calibration="separate", seed=4),
    Case("partial_fourier_68", partial_fourier=0.75, seed=5),
    Case("asymmetric_echo", asymmetric_echo=0.75, seed=6),
    Case("two_averages", averages=2, seed=7),
    Case("three_slices", slices=3, seed=8),
    Case("matrix_256", readout=256, lines=256, coils=16, seed=9),
    Case("matrix_192x256", readout=256, lines=192, coils=16, seed=10),
]}


# ---------------------------------------------------------------------------- object
def brain_phantom(height: int, width: int, slice_index: int = 0, seed: int = 0) -> np.ndarray:
    """A complex brain-like slice ``[height, width]`` (readout x phase encode), magnitude ~0-1."""
    rng = np.random.default_rng(1000 + seed)
    aspect = width / height  # square pixels: the phase-encode FOV is width / height of the readout FOV
    y, x = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-aspect, aspect, width), indexing="ij")
    r = np.hypot(x / 0.72, y / 0.92)
    angle = np.arctan2(y, x)
    folds = 0.045 * np.sin(14 * angle + 3 * slice_index) + 0.02 * np.sin(31 * angle + 1.3)
    image = np.zeros((height, width))
    image[(r < 1.0) & (r > 0.93)] = 0.35  # skull / scalp
    brain = r < 0.88 + folds * 0.3
    image[brain] = 0.55  # grey matter
    image[np.hypot(x / 0.6, y / 0.8) < 0.8 + folds] = 0.8  # white matter inside a folded cortex
    image[(np.abs(x) < 0.12 + 0.04 * slice_index) & (np.abs(y + 0.05) < 0.3)] = 0.15  # ventricles
    image[np.hypot(x - 0.35, y - 0.3) < 0.09] = 1.0  # a lesion
    texture = rng.standard_normal((height, width))
    kernel = np.exp(-np.add.outer(np.fft.fftfreq(height) ** 2, np.fft.fftfreq(width) ** 2) * 2000)
    texture = np.real(np.fft.ifft2(np.fft.fft2(texture) * kernel))
    image = image * (1 + 0.6 * texture / (np.abs(texture).max() + 1e-12)) * (r < 1.0)
    phase = 0.6 * x + 0.3 * y ** 2
    return (np.clip(image, 0, None) * np.exp(1j * phase)).astype(np.complex64)


# ---------------------------------------------------------------------------- coils
def loop_coil_sensitivities(coils: int, readout: int, lines: int, seed: int = 0) -> np.ndarray:
    """``[coils, readout, lines]`` complex on the oversampled readout grid (2x the recon FOV).

    Physical units: the recon FOV spans [-1, 1] along the readout, so the oversampled
    grid spans [-2, 2]; the phase-encode FOV spans ``[-lines/readout*2, ...]`` likewise.
    Loops of radius 0.35 sit on a ring of radius 1.25 around the head (axis pointing at
    the centre, staggered along z); their in-plane B1- comes from integrating
    Biot-Savart over the loop. Scaled so the strongest coil peaks at 2.5 inside the
    head: deliberately not unit-norm.
    """
    rng = np.random.default_rng(2000 + seed)
    half_pe = 2.0 * lines / readout
    y, x = np.meshgrid(np.linspace(-2, 2, readout), np.linspace(-half_pe, half_pe, lines), indexing="ij")
    points = np.stack([x, y, np.zeros_like(x)], axis=-1)  # [RO, PE, 3]
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    maps = []
    for c in range(coils):
        theta = 2 * np.pi * c / coils + 0.1 * rng.standard_normal()
        centre = np.array([1.25 * np.cos(theta), 1.25 * np.sin(theta), 0.3 * ((c % 3) - 1)])
        axis = -centre / np.linalg.norm(centre)
        u = np.cross(axis, [0.0, 0.0, 1.0])
        u /= np.linalg.norm(u)
        v = np.cross(axis, u)
        radius = 0.35
        wire = centre + radius * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * v)  # [T, 3]
        dl = radius * (-np.sin(t)[:, None] * u + np.cos(t)[:, None] * v) * (2 * np.pi / len(t))
        field = np.zeros(points.shape)
        for k in range(len(t)):
            d = points - wire[k]
            distance = np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 0.1)
            field += np.cross(dl[k], d) / distance ** 3
        maps.append((field[..., 0] - 1j * field[..., 1]) * (0.8 + 0.4 * rng.random()))
    maps = np.stack(maps)
    head = np.hypot(x, y) < 1.0
    return (maps / np.abs(maps[:, head]).max() * 2.5).astype(np.complex64)


def noise_covariance(coils: int, seed: int = 0) -> np.ndarray:
    """A random full, well-conditioned Hermitian covariance ``[coils, coils]`` with correlated channels."""
    rng = np.random.default_rng(3000 + seed)
    a = rng.standard_normal((coils, coils)) + 1j * rng.standard_normal((coils, coils))
    mixing = np.eye(coils) + 0.35 * a / np.sqrt(coils)
    scale = np.diag(0.7 + 0.6 * rng.random(coils))
    return (scale @ mixing @ mixing.conj().T @ scale).astype(np.complex128)


def fft_centred(image: np.ndarray, axes=(-2, -1)) -> np.ndarray:
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(image, axes=axes), axes=axes, norm="ortho"), axes=axes)


def ifft_centred(kspace: np.ndarray, axes=(-2, -1)) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(kspace, axes=axes), axes=axes, norm="ortho"), axes=axes)


# ---------------------------------------------------------------------------- header
HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <subjectInformation><patientID>CORPUS-{name}</patientID></subjectInformation>
  <measurementInformation><measurementID>corpus_{name}</measurementID><patientPosition>HFS</patientPosition>
    <protocolName>ext_{name}</protocolName></measurementInformation>
  <acquisitionSystemInformation><systemVendor>ExternalCorpus</systemVendor>
    <systemFieldStrength_T>3.0</systemFieldStrength_T><relativeReceiverNoiseBandwidth>0.79</relativeReceiverNoiseBandwidth>
    <receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>123200000</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace><matrixSize><x>{ro2}</x><y>{pe}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov_ro2}</x><y>{fov_pe}</y><z>4</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{ro}</x><y>{pe}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov_ro}</x><y>{fov_pe}</y><z>4</z></fieldOfView_mm></reconSpace>
    <trajectory>cartesian</trajectory>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>{e1_min}</minimum><maximum>{e1_max}</maximum><center>{e1_centre}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <average><minimum>0</minimum><maximum>{ave_max}</maximum><center>0</center></average>
      <slice><minimum>0</minimum><maximum>{slice_max}</maximum><center>0</center></slice>
      <repetition><minimum>0</minimum><maximum>0</maximum><center>0</center></repetition>
    </encodingLimits>
    <parallelImaging>
      <accelerationFactor><kspace_encoding_step_1>{r}</kspace_encoding_step_1><kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor>
      <calibrationMode>{mode}</calibrationMode>
    </parallelImaging>
  </encoding>
  <sequenceParameters><TR>9000</TR><TE>90</TE><TI>2500</TI></sequenceParameters>
</ismrmrdHeader>
"""


def _flag(acq, flag):
    acq.set_flag(flag)


def write_case(case: Case, out_dir, image: Optional[np.ndarray] = None) -> Path:
    """Write ``case`` as ``out_dir/<name>.h5`` (+ ``<name>.truth.npz``); returns the raw file's path.

    ``image``: optional complex object ``[slices, readout, lines]`` (recon matrix, no
    oversampling); default :func:`brain_phantom`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{case.name}.h5"
    if path.exists():
        path.unlink()
    rng = np.random.default_rng(case.seed)
    ro, pe, ro2 = case.readout, case.lines, 2 * case.readout
    fov = 220.0
    psi = noise_covariance(case.coils, case.seed)
    chol = np.linalg.cholesky(psi)
    maps = loop_coil_sensitivities(case.coils, ro2, pe, case.seed)  # on the oversampled readout FOV
    whitener = np.linalg.inv(chol)

    centre = pe // 2
    first = pe - int(round(case.partial_fourier * pe)) if case.partial_fourier < 1 else 0
    acs = list(range(centre - case.acs // 2, centre - case.acs // 2 + case.acs))
    lattice = [e1 for e1 in range(first, pe) if (e1 - centre) % case.acceleration == 0]
    imaging = lattice  # ACS lines on the lattice are imaging lines too (CALIBRATION_AND_IMAGING)
    ro_first = ro2 - int(round(case.asymmetric_echo * ro2)) if case.asymmetric_echo < 1 else 0

    header = HEADER.format(name=case.name, coils=case.coils, ro2=ro2, ro=ro, pe=pe, fov_ro2=2 * fov, fov_ro=fov,
                           fov_pe=fov * pe / ro, e1_min=first, e1_max=pe - 1, e1_centre=centre,
                           ave_max=case.averages - 1, slice_max=case.slices - 1, r=case.acceleration,
                           mode=case.calibration)
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header(header)
    counter = [0]

    def send(samples, flags=(), e1=0, slice_index=0, average=0, centre_sample=None, dwell=case.dwell_us):
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(samples.astype(np.complex64)))
        acq.scan_counter = counter[0]
        counter[0] += 1
        acq.sample_time_us = dwell
        acq.available_channels = case.coils
        acq.center_sample = samples.shape[1] // 2 if centre_sample is None else centre_sample
        acq.idx.kspace_encode_step_1 = e1
        acq.idx.slice = slice_index
        acq.idx.average = average
        for flag in flags:
            _flag(acq, flag)
        acq.read_dir[:] = (0.0, 1.0, 0.0)
        acq.phase_dir[:] = (1.0, 0.0, 0.0)
        acq.slice_dir[:] = (0.0, 0.0, 1.0)
        acq.position[:] = (0.0, 0.0, 6.0 * slice_index - 6.0)
        acq.patient_table_position[:] = (0.0, 0.0, 0.0)
        dataset.append_acquisition(acq)

    if image is not None and not fits(case, image):
        raise ValueError(f"{case.name}: an object of shape {image.shape} does not fill {case.slices} slice(s) of "
                         f"{ro} x {pe}")
    objects = [image[s] if image is not None else brain_phantom(ro, pe, s, case.seed) for s in range(case.slices)]
    coil_kspace, truth_rss = [], []
    for obj in objects:
        full = np.zeros((ro2, pe), dtype=np.complex64)
        full[ro // 2:ro // 2 + ro] = obj  # the object fills the central half of the oversampled readout
        coil_images = maps * full[None]
        coil_kspace.append(fft_centred(coil_images))  # [C, RO2, PE]
        whitened = np.tensordot(whitener, coil_images[:, ro // 2:ro // 2 + ro], axes=(1, 0))
        truth_rss.append(np.sqrt((np.abs(whitened) ** 2).sum(0)).astype(np.float32))
    # one noise level for the file: whitened noise of E|n|^2 = noise_std^2 per sample, SNR on slice 0's RSS
    noise_std = float(truth_rss[0][truth_rss[0] > 0.1 * truth_rss[0].max()].mean() / case.snr)

    def noise(samples, dwell):
        """Receiver noise ``[C, samples]``: covariance psi, variance per sample growing with the bandwidth."""
        white = (rng.standard_normal((case.coils, samples)) + 1j * rng.standard_normal((case.coils, samples)))
        return noise_std * np.sqrt(case.dwell_us / dwell) * (chol @ white) / np.sqrt(2)

    send(noise(256, case.noise_dwell_us), (ismrmrd.ACQ_IS_NOISE_MEASUREMENT,), dwell=case.noise_dwell_us)

    calibration_only = [e1 for e1 in acs if e1 not in imaging]
    record = {"imaging_lines": imaging, "calibration_only_lines": calibration_only,
              "readout_first_sample": ro_first, "readout_samples": ro2, "noise_std": noise_std, "case": asdict(case)}
    for s, kspace in enumerate(coil_kspace):
        order = []
        if case.calibration == "separate":
            # a reference scan of another contrast, sent before the imaging lines: not data of this image
            ref_object = np.sqrt(np.abs(objects[s])) * np.exp(1j * np.angle(objects[s]))
            full = np.zeros((ro2, pe), dtype=np.complex64)
            full[ro // 2:ro // 2 + ro] = ref_object
            ref_kspace = fft_centred(maps * full[None])
            order += [(e1, 0, "ref") for e1 in acs]
        lines = imaging + (calibration_only if case.calibration == "embedded" else [])
        for average in range(case.averages):
            order += [(e1, average, "img" if e1 in imaging else "cal") for e1 in sorted(lines)]
        last = len(order) - 1
        for i, (e1, average, kind) in enumerate(order):
            flags = []
            if kind in ("ref", "cal"):
                flags.append(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
            elif e1 in acs and case.calibration == "embedded":
                flags.append(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
            if i == last:
                flags.append(ismrmrd.ACQ_LAST_IN_SLICE)
                if s == case.slices - 1:
                    flags.append(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
            source = ref_kspace if kind == "ref" else kspace
            line = source[:, :, e1] + noise(ro2, case.dwell_us)
            send(line[:, ro_first:], flags, e1=e1, slice_index=s, average=average, centre_sample=ro2 // 2 - ro_first)
    dataset.close()
    np.savez_compressed(path.with_suffix(".truth.npz"), rss=np.stack(truth_rss), object=np.stack(objects),
                        record=json.dumps(record), noise_std=noise_std)
    log.info("%s: %d coils, %d slices, %d imaging + %d calibration-only lines, SNR %g", path, case.coils,
             case.slices, len(imaging), len(record["calibration_only_lines"]), case.snr)
    return path


def fits(case: Case, image: np.ndarray) -> bool:
    """Whether an object ``[slices, readout, lines]`` fills ``case``."""
    return image.ndim == 3 and image.shape[0] >= case.slices and image.shape[1:] == (case.readout, case.lines)


def load_image(path) -> np.ndarray:
    """A complex object ``[slices, readout, lines]`` from ``.npy`` or from ``.npz`` (key ``image``)."""
    data = np.load(path)
    return np.asarray(data["image"] if hasattr(data, "files") else data).astype(np.complex64)


def load_truth(path):
    """``(rss [S, H, W], record dict)`` of a corpus file."""
    with np.load(Path(path).with_suffix(".truth.npz")) as z:
        return z["rss"], json.loads(str(z["record"]))


def small(case: Case, readout=32, lines=32, coils=6, acs=12) -> Case:
    """A fast version of a case for the tests (same flags and structure, smaller matrix)."""
    scale = readout / case.readout
    return replace(case, readout=readout, lines=max(8, int(round(case.lines * scale))), coils=min(coils, case.coils),
                   acs=acs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the raw files and their .truth.npz sidecars")
    parser.add_argument("--cases", nargs="*", default=sorted(CASES), choices=sorted(CASES))
    parser.add_argument("--image", type=Path, help="optional complex object [slices, readout, lines] (.npy, or .npz "
                                                   "with key 'image'); cases it does not fill are skipped")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="added to every case's seed: other coils, noise and phantom (validation corpora)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    image = load_image(args.image) if args.image else None
    for name in args.cases:
        if image is not None and not fits(CASES[name], image):
            log.info("%s: skipped (the object %s does not fill it)", name, image.shape)
            continue
        write_case(replace(CASES[name], seed=CASES[name].seed + args.seed_offset), args.out, image)


if __name__ == "__main__":
    main()
