"""``dps-gadgetron simulate OUT.h5``: write an ISMRMRD raw file of a simulated subject, as a scanner would."""

import logging
from pathlib import Path

log = logging.getLogger(__name__)

HELP = "simulate a scanner's ISMRMRD raw file (any subject, contrast, R, coils, SNR; embedded or separate ACS)"


def add_arguments(parser):
    parser.add_argument("out", type=Path, help="ISMRMRD raw HDF5 file to write")
    parser.add_argument("--subject", default="colin27-0000", help="subject id '<source>-<index>' (default: a "
                        "test-split subject)")
    parser.add_argument("--contrast", default="FLAIR", help="T1, T2, PD, T1post or FLAIR")
    parser.add_argument("--slices", type=int, nargs="+", default=[8, 7], help="slice indices of the subject")
    parser.add_argument("--acceleration", "-R", type=int, default=4, help="equispaced R")
    parser.add_argument("--acs", type=int, default=24, help="calibration lines")
    parser.add_argument("--calibration", choices=("embedded", "separate"), default="embedded")
    parser.add_argument("--fully-sampled", action="store_true", help="write every line (no parallel imaging)")
    parser.add_argument("--coils", type=int, default=12)
    parser.add_argument("--snr", type=float, default=30.0)
    parser.add_argument("--matrix", type=int, default=128)
    parser.add_argument("--fov-mm", type=float, default=240.0)
    parser.add_argument("--lesion-probability", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    import numpy as np
    import torch

    from models.data.anatomy import make_subject
    from models.data.raw_simulator import RawProtocol, simulate_raw
    from models.mri.coil_simulation import simulate_coil_maps

    subject = make_subject(args.subject, seed=args.seed, lesion_probability=args.lesion_probability)
    matrix = (args.matrix, args.matrix)
    images = np.stack([subject.sample(k, args.contrast, matrix=matrix, fov_mm=args.fov_mm).image
                       for k in args.slices])
    maps = simulate_coil_maps(args.coils, matrix, generator=torch.Generator().manual_seed(args.seed))
    protocol = RawProtocol(acceleration=args.acceleration, num_acs=args.acs, calibration_mode=args.calibration,
                           fully_sampled=args.fully_sampled, fov_mm=(args.fov_mm, args.fov_mm),
                           patient_id=args.subject, series_description=f"{args.contrast} (simulated)")
    sim = simulate_raw(args.out, torch.from_numpy(images), maps, protocol=protocol, snr=args.snr,
                       generator=torch.Generator().manual_seed(args.seed + 1))
    log.info("wrote %s: %d slices of %s %s, noise std %.4g", args.out, len(args.slices), args.subject,
             args.contrast, sim.noise_std)
    return 0
