"""Offline replay: an ISMRMRD raw file through a chain XML, images into an ISMRMRD image file.

:func:`read_raw` opens the raw HDF5 file (header + acquisitions, noise scans
included) and fails with :class:`RawFileError` / :class:`HeaderError` naming
the problem; :func:`replay` runs the chain (:mod:`gadgets.chain`) and writes
every image it produces to ``out`` (group ``dataset``, one image series per
``image_series_index``: ``image_1``, ``image_2``, ...), with a progress bar per
slice and a :class:`ReplaySummary` that says what was lost.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import ismrmrd
import numpy as np

from gadgets.chain import ChainResult, ExternalNode, parse_chain, run_chain
from gadgets.errors import ChainConfigError, HeaderError, RawFileError

log = logging.getLogger(__name__)

# what makes one image: averages of a line are combined into one (BucketToBuffer N_dimension = average)
SLICE_FIELDS = ("slice", "repetition", "contrast", "phase", "set")


@dataclass
class RawFile:
    path: Path
    header_bytes: bytes
    header: object
    count: int
    slices: List[Tuple[int, ...]]  # distinct (slice, repetition, contrast, phase, set) of imaging data
    dataset: ismrmrd.Dataset

    def acquisitions(self) -> Iterator[ismrmrd.Acquisition]:
        for i in range(self.count):
            try:
                yield self.dataset.read_acquisition(i)
            except Exception as exc:  # h5py/ismrmrd raise many types on damaged data
                raise RawFileError(f"{self.path}: acquisition {i} of {self.count} unreadable "
                                   f"(truncated file?): {exc}") from None

    def close(self):
        self.dataset.close()


def read_raw(path) -> RawFile:
    """Open an ISMRMRD raw file and check its header; raises :class:`RawFileError` / :class:`HeaderError`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise RawFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            if "dataset" not in f or "xml" not in f["dataset"] or "data" not in f["dataset"]:
                raise RawFileError(f"{path}: HDF5 file without /dataset/xml and /dataset/data: not an ISMRMRD raw "
                                   f"file")
            raw = f["dataset/data"]
            count = int(raw.shape[0])
            heads = raw.fields("head")[:] if count else None
    except OSError as exc:
        raise RawFileError(f"{path}: not a readable HDF5 file (truncated or not ISMRMRD?): {exc}") from None
    except (KeyError, ValueError) as exc:
        raise RawFileError(f"{path}: unexpected layout of /dataset/data: {exc}") from None
    # read-only: a raw file on a read-only archive, or one that another replay has open, must
    # still replay (ismrmrd's default here is 'r+', which takes HDF5's exclusive lock)
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False, mode="r")
    header_bytes = dataset.read_xml_header()
    try:
        header = ismrmrd.xsd.CreateFromDocument(header_bytes)
    except Exception as exc:
        dataset.close()
        raise HeaderError(f"{path}: the ISMRMRD XML header does not parse: {exc}") from None
    if not header.encoding:
        dataset.close()
        raise HeaderError(f"{path}: the ISMRMRD header has no <encoding> section")
    if count == 0:
        dataset.close()
        raise RawFileError(f"{path}: no acquisitions")
    noise = 1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1)
    calib = 1 << (ismrmrd.ACQ_IS_PARALLEL_CALIBRATION - 1)
    imaging = (heads["flags"] & (noise | calib)) == 0
    idx = heads["idx"]
    keys = sorted({tuple(int(idx[name][i]) for name in SLICE_FIELDS) for i in np.flatnonzero(imaging)})
    return RawFile(path, header_bytes, header, count, keys, dataset)


@dataclass
class ReplaySummary:
    expected: int  # slices in the raw file
    slices: int  # magnitude images written
    images: int  # all images written
    seconds: float
    device: str
    errors: List[str] = field(default_factory=list)
    series: Dict[int, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return max(self.expected - self.slices, 0)

    @property
    def ok(self) -> bool:
        return not self.errors and self.lost == 0

    def line(self) -> str:
        text = (f"replay: {self.slices}/{self.expected} slices reconstructed, {self.images} images, "
                f"{self.seconds:.1f} s, device {self.device}")
        if not self.ok:
            text += f"; LOST {self.lost} slice(s), {len(self.errors)} error(s)"
        return text


def apply_overrides(chain, overrides: Dict[str, str]):
    """``{"gadgets.dps_recon.method": "cg_sense"}`` -> set that property on that external node."""
    import xml.etree.ElementTree as ET

    for dotted, value in overrides.items():
        module, _, prop = dotted.rpartition(".")
        nodes = [n for n in chain.nodes if isinstance(n, ExternalNode) and n.module == module]
        if not nodes:
            raise ChainConfigError(f"--set {dotted}: the chain has no external node {module!r}")
        for node in nodes:
            existing = [p for p in node.configuration.iter("property") if p.get("name") == prop]
            if existing:
                existing[0].set("value", value)
            else:
                ET.SubElement(node.configuration, "property", name=prop, value=value)
            node.properties[prop] = value
    return chain


def write_image(dataset: ismrmrd.Dataset, image: ismrmrd.Image):
    dataset.append_image(f"image_{int(image.image_series_index)}", image)


def replay(raw_path, chain_path, out_path, overrides: Optional[Dict[str, str]] = None, progress: bool = True,
           on_image=None) -> ReplaySummary:
    """Replay ``raw_path`` through ``chain_path``; images go to ``out_path`` (replaced if it exists)."""
    from tqdm import tqdm

    start = time.perf_counter()
    chain = apply_overrides(parse_chain(chain_path), overrides or {})
    raw = read_raw(raw_path)
    out_path = Path(out_path)
    if out_path.exists():
        out_path.unlink()
    out = ismrmrd.Dataset(str(out_path), "dataset", create_if_needed=True)
    out.write_xml_header(raw.header_bytes)
    bar = tqdm(total=len(raw.slices), unit="slice", desc="replay", disable=not progress, leave=False)
    counts = {"slices": 0, "images": 0, "series": {}, "device": "cpu"}

    def sink(item):
        if not isinstance(item, ismrmrd.Image):
            log.debug("chain output %s not written (not an image)", type(item).__name__)
            return
        write_image(out, item)
        series = int(item.image_series_index)
        counts["images"] += 1
        counts["series"][series] = counts["series"].get(series, 0) + 1
        meta = item.meta
        counts["device"] = meta.get("DPS_Device", counts["device"])
        if meta.get("GADGETRON_DataRole") == "Image":
            counts["slices"] += 1
            bar.update(1)
        if on_image is not None:
            on_image(item)

    result = ChainResult()
    try:
        run_chain(chain, raw.header_bytes, raw.acquisitions(), sink, result)
    except Exception as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
        log.error("replay stopped: %s: %s", type(exc).__name__, exc)
    finally:
        bar.close()
        out.close()
        raw.close()
    return ReplaySummary(len(raw.slices), counts["slices"], counts["images"], time.perf_counter() - start,
                         counts["device"], result.errors, counts["series"])
