"""``dps-gadgetron replay``: run a raw ISMRMRD file through a chain XML offline, write an image file."""

import argparse
import logging
import sys
import textwrap
from pathlib import Path

from models.sampler.zeta import TABLES, zeta_table_text

log = logging.getLogger(__name__)

HELP = "replay an ISMRMRD raw file through a config_xml/ chain in-process and write ISMRMRD images"


def add_arguments(parser):
    parser.add_argument("raw", type=Path, help="ISMRMRD raw HDF5 file (header, noise scans, acquisitions)")
    parser.add_argument("--config", "-c", type=Path, required=True, help="chain XML, e.g. config_xml/dps_r4.xml")
    parser.add_argument("--out", "-o", type=Path, default=Path("images.h5"),
                        help="ISMRMRD image file to write (replaced if it exists; default images.h5)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="MODULE.PROPERTY=VALUE",
                        help="override a property of an external node, e.g. gadgets.dps_recon.device=cpu "
                             f"(repeatable); zeta 'auto' takes the sampler's per-R table: DDS (the chains') "
                             f"{zeta_table_text(TABLES['dds'])}; DPS (sampler=dps) {zeta_table_text(TABLES['dps'])}")
    parser.add_argument("--png", type=Path, help="also write a PNG preview of the magnitude images")
    parser.add_argument("--nifti", type=Path, help="also write the magnitude images as a NIfTI volume (needs nibabel)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = properties_epilog()


def properties_epilog(width: int = 100) -> str:
    """The properties ``--set`` can change, from the settings schema (:mod:`gadgets.settings`)."""
    from gadgets.settings import property_help

    lines = ["properties of our gadgets (--set MODULE.PROPERTY=VALUE; name = default (allowed): meaning):"]
    for line in property_help():
        indent = len(line) - len(line.lstrip())
        lines += textwrap.wrap(line, width, initial_indent="", subsequent_indent=" " * (indent + 4)) \
            if indent else [line]
    return "\n".join(lines)


def _overrides(items, parser_error):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            parser_error(f"--set expects MODULE.PROPERTY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _write_png(path, images):
    import numpy as np

    from gadgets.previews import save_png_row

    panels = [(str(img.meta.get("DPS_SliceLabel", f"image {i + 1}")), np.asarray(img.data[0, 0], dtype=np.float32))
              for i, img in enumerate(images)]
    if panels:
        save_png_row(path, panels)
        log.info("preview written to %s", path)


def run(args) -> int:
    from gadgets.errors import GadgetError
    from gadgets.replay import replay

    def error(message):
        print(f"dps-gadgetron replay: error: {message}", file=sys.stderr)
        sys.exit(2)

    overrides = _overrides(args.overrides, error)
    magnitudes = []

    def keep(image):
        if (args.png is not None or args.nifti is not None) and image.meta.get("GADGETRON_DataRole") == "Image":
            magnitudes.append(image)

    try:
        summary = replay(args.raw, args.config, args.out, overrides, progress=not args.no_progress, on_image=keep)
    except GadgetError as exc:
        log.error("%s", exc)
        return 2
    for text in summary.errors:
        log.error("%s", text)
    if args.png is not None:
        _write_png(args.png, magnitudes)
    if args.nifti is not None and magnitudes:
        from gadgets.nifti import write_nifti
        try:
            log.info("NIfTI written to %s", write_nifti(args.nifti, magnitudes))
        except GadgetError as exc:
            log.error("%s", exc)
            return 2
    print(summary.line(), file=sys.stderr)
    if summary.slices == 0:
        return 2
    return 0 if summary.ok else 1
