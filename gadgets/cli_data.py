"""``dps-gadgetron data bank``: render a slice bank (training / validation / test slices)."""

import logging
from pathlib import Path

log = logging.getLogger(__name__)

HELP = "slice banks for training: render them from the anatomy sources, or import measured files"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    bank = sub.add_parser("bank", help="render a slice bank (HDF5)", description="render a slice bank (HDF5)")
    bank.add_argument("--split", choices=("train", "val", "test"), required=True)
    bank.add_argument("--contrasts", nargs="+", required=True, help="e.g. T1 T2 PD T1post, or FLAIR")
    bank.add_argument("--subjects-per-source", type=int, required=True,
                      help="augmented subjects rendered from each source of the split")
    bank.add_argument("--slices-per-subject", type=int, default=10)
    bank.add_argument("--matrix", type=int, default=128)
    bank.add_argument("--fov-mm", type=float, default=240.0)
    bank.add_argument("--pixel-mm", type=float, nargs=2, metavar=("LOW", "HIGH"),
                      help="draw each slice's pixel size in this range (e.g. 0.9 2.0); the field of view is "
                           "pixel x matrix (then --fov-mm is unused)")
    bank.add_argument("--lesion-probability", type=float, default=0.7)
    bank.add_argument("--first-index", type=int, default=0,
                      help="first subject index (keeps subject sets of different banks apart)")
    bank.add_argument("--seed", type=int, default=0)
    bank.add_argument("--workers", type=int, default=2)
    bank.add_argument("--out", type=Path, required=True)
    imp = sub.add_parser("import", help="slice bank from fully sampled fastMRI / ISMRMRD raw files",
                         description="slice bank from fully sampled fastMRI / ISMRMRD raw files")
    imp.add_argument("--fastmri", nargs="*", default=[], type=Path, help="fastMRI multi-coil brain HDF5 files")
    imp.add_argument("--ismrmrd", nargs="*", default=[], type=Path, help="ISMRMRD raw HDF5 files")
    imp.add_argument("--contrast", help="contrast name (required for ISMRMRD files; overrides fastMRI's)")
    imp.add_argument("--matrix", type=int, default=128, help="training matrix (k-space truncation)")
    imp.add_argument("--out", type=Path, required=True)


def run(args) -> int:
    if getattr(args, "pixel_mm", None) and not 0 < args.pixel_mm[0] <= args.pixel_mm[1]:
        from models.errors import ReconInputError
        raise ReconInputError(f"--pixel-mm {args.pixel_mm}: need 0 < LOW <= HIGH")
    if args.data_command == "import":
        from models.data.bank_import import bank_from_files
        path = bank_from_files(args.out, fastmri=args.fastmri, ismrmrd=args.ismrmrd, contrast=args.contrast,
                               matrix=args.matrix)
        log.info("wrote %s", path)
        return 0
    from models.data.bank_builder import BankSpec, build_slice_bank

    spec = BankSpec(split=args.split, contrasts=tuple(args.contrasts), subjects_per_source=args.subjects_per_source,
                    slices_per_subject=args.slices_per_subject, matrix=args.matrix, fov_mm=args.fov_mm,
                    lesion_probability=args.lesion_probability, first_index=args.first_index, seed=args.seed,
                    pixel_mm_range=tuple(args.pixel_mm) if args.pixel_mm else None)
    path = build_slice_bank(args.out, spec, workers=args.workers)
    log.info("wrote %s", path)
    return 0
