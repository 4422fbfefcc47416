"""MRD App server (Siemens FIRE / OpenRecon, kspaceKelvin/python-ismrmrd-server clients): ``dps-gadgetron mrd-serve``.

The MRD streaming protocol uses Gadgetron's framing and message ids (uint16 id;
1 CONFIG_FILE: 1024-byte name, 2 CONFIG_TEXT / 3 HEADER / 5 TEXT: uint32 length
and text, 4 CLOSE, 1008 acquisition, 1022 image, 1026 waveform). One connection
is one scan:

1. CONFIG_FILE names the chain, by file name in ``config_xml/`` (``dps_r4``,
   ``reference_fully_sampled``, ...; never a path). A CONFIG_TEXT or TEXT message
   holding JSON ``{"parameters": {...}}`` (OpenRecon sends its UI values so, the
   reference client sends ``<config>.json``) may name the chain (``config``) and
   overrides the properties of ``gadgets.dps_recon`` listed in :data:`OVERRIDABLE`;
   other keys are logged and ignored.
2. HEADER, then acquisitions until CLOSE: they run through the same chain as
   ``dps-gadgetron replay`` (standard-gadget twins, then our gadgets in process),
   and every image the chain makes goes back as an MRD image (meta and geometry
   as under Gadgetron; the posterior std series too when the chain sends it).
3. The server answers CLOSE. Whatever went wrong (unknown chain, bad parameter,
   lost slices) is sent first as a TEXT message starting ``ERROR``; a failing scan
   never stops the server.

Scans are queued (one reconstructs at a time) and the prior stays loaded between
them (:mod:`models.prior.shipped` caches it per process). The server binds
loopback unless told otherwise.
"""

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Dict, Optional

import ismrmrd

from gadgetron.external import constants, readers, writers

from gadgets.chain import ChainResult, parse_chain, run_chain
from gadgets.errors import ChainConfigError, ConnectionDroppedError, GadgetError
from gadgets.protocol import DEFAULT_IDLE_TIMEOUT_S, _robust_reader
from gadgets.replay import apply_overrides
from gadgets.server import AcceptLoop

log = logging.getLogger(__name__)

CHAINS = Path(__file__).resolve().parents[1] / "config_xml"
#: chain properties an MRD client may set (``gadgets.dps_recon``'s), as OpenRecon UI parameters
OVERRIDABLE = ("zeta", "num_steps", "num_samples", "output_std", "method", "sampler")
CONFIG_FILE_BYTES = 1024

ID = constants.GadgetMessageIdentifier
CONFIG_FILE, CONFIG_TEXT, HEADER, CLOSE, TEXT = 1, 2, 3, 4, 5
ACQUISITION = constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION
WAVEFORM = constants.GADGET_MESSAGE_ISMRMRD_WAVEFORM


class ScanError(GadgetError):
    """A problem with one client's scan (reported to that client; the server goes on)."""


class _Socket:
    """``read(n)`` that fails on a dropped or silent client, ``write(bytes)``."""

    def __init__(self, sock: socket.socket, idle_timeout: float):
        sock.settimeout(idle_timeout)
        self.sock = sock
        self.read = _robust_reader(sock, idle_timeout)

    def write(self, data) -> None:
        self.sock.sendall(bytes(data))

    def message_id(self) -> int:
        return readers.read(self, ID)

    def text(self) -> str:
        return readers.read_byte_string(self, constants.uint32).split(b"\0", 1)[0].decode("utf-8", "replace")

    def send_text(self, text: str) -> None:
        data = text.encode("utf-8", "replace") + b"\0"
        self.write(ID.pack(TEXT) + constants.uint32.pack(len(data)) + data)

    def send_close(self) -> None:
        self.write(ID.pack(CLOSE))


def chain_path(name: str, folder: Path = CHAINS) -> Path:
    """``config_xml/<name>.xml`` for a chain name (``dps_r4`` or ``dps_r4.xml``); raises :class:`ScanError`."""
    name = name.strip()
    stem = name[:-4] if name.endswith(".xml") else name
    known = sorted(p.stem for p in folder.glob("*.xml"))
    if not stem or "/" in stem or "\\" in stem or stem.startswith(".") or stem not in known:
        raise ScanError(f"unknown configuration {name!r}; this server has: {', '.join(known)}")
    return folder / f"{stem}.xml"


def parameters_from_json(text: str) -> Optional[Dict[str, object]]:
    """The ``parameters`` object of a JSON config text, or None when the text is not such JSON."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("parameters"), dict):
        return None
    return document["parameters"]


def overrides_from(parameters: Dict[str, object]) -> Dict[str, str]:
    """``{"gadgets.dps_recon.zeta": "0.5", ...}`` for the parameters a client may set."""
    overrides, ignored = {}, []
    for key, value in parameters.items():
        if key in OVERRIDABLE:
            overrides[f"gadgets.dps_recon.{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
        elif key not in ("config", "customconfig"):
            ignored.append(key)
    if ignored:
        log.info("parameters not used by this app: %s", ", ".join(sorted(ignored)))
    return overrides


class Scan:
    """One client's scan: read its config and header, run the chain on its acquisitions, send the images."""

    def __init__(self, link: _Socket, chains: Path = CHAINS):
        self.link = link
        self.chains = chains
        self.config_name: Optional[str] = None
        self.parameters: Dict[str, object] = {}
        self.header_bytes: Optional[bytes] = None
        self.first = None  # the first acquisition, read before the chain starts
        self.closed = False  # the client sent CLOSE
        self.images = 0
        self.slices = 0

    def _config_text(self, text: str, where: str):
        parameters = parameters_from_json(text)
        if parameters is None:
            if where == "CONFIG_TEXT":
                raise ScanError("CONFIG_TEXT must be JSON {\"parameters\": {...}}: this app runs only the chains "
                                "of its config_xml/ folder, named by CONFIG_FILE or parameters.config")
            log.info("TEXT from the client: %s", text[:200])
            return
        self.parameters.update(parameters)
        if parameters.get("config") and self.config_name is None:
            self.config_name = str(parameters["config"])

    def read_preamble(self):
        """Config, header and parameters, up to the first acquisition (or CLOSE)."""
        while True:
            mid = self.link.message_id()
            if mid == CONFIG_FILE:
                self.config_name = self.link.read(CONFIG_FILE_BYTES).split(b"\0", 1)[0].decode("utf-8", "replace")
            elif mid == CONFIG_TEXT:
                self._config_text(self.link.text(), "CONFIG_TEXT")
            elif mid == HEADER:
                self.header_bytes = readers.read_byte_string(self.link, constants.uint32).split(b"\0", 1)[0]
            elif mid == TEXT:
                self._config_text(self.link.text(), "TEXT")
            elif mid == WAVEFORM:
                readers.read_waveform(self.link)
            elif mid == ACQUISITION:
                self.first = readers.read_acquisition(self.link)
                return
            elif mid == CLOSE:
                self.closed = True
                return
            else:
                raise ScanError(f"unexpected MRD message id {mid} before the data")

    def acquisitions(self):
        """The first acquisition, then the rest until CLOSE (waveforms are read and dropped)."""
        first, self.first = self.first, None
        if first is not None:
            yield first
        while not self.closed:
            mid = self.link.message_id()
            if mid == ACQUISITION:
                yield readers.read_acquisition(self.link)
            elif mid == WAVEFORM:
                readers.read_waveform(self.link)
            elif mid == TEXT:
                log.info("TEXT from the client during the data: %s", self.link.text()[:200])
            elif mid == CLOSE:
                self.closed = True
            else:
                raise ScanError(f"unexpected MRD message id {mid} in the data")

    def send(self, item):
        if not isinstance(item, ismrmrd.Image):
            log.debug("chain output %s not sent (not an image)", type(item).__name__)
            return
        writers.write_image(self.link, item)
        self.images += 1
        if item.meta.get("GADGETRON_DataRole") == "Image":
            self.slices += 1

    def run(self, base_overrides: Optional[Dict[str, str]] = None) -> ChainResult:
        """Run the scan; ``base_overrides`` (the server's, e.g. its device) apply before the client's."""
        self.read_preamble()
        try:
            if self.config_name is None:
                raise ScanError("no configuration named (CONFIG_FILE, or parameters.config in a JSON config)")
            if self.header_bytes is None:
                raise ScanError("no MRD header (message 3) before the data")
            if self.first is None:
                raise ScanError("the client sent no acquisitions")
            chain = parse_chain(chain_path(self.config_name, self.chains))
            chain = apply_overrides(chain, {**(base_overrides or {}), **overrides_from(self.parameters)})
            log.info("scan: chain %s, parameters %s", self.config_name, self.parameters or "{}")
            result = ChainResult()
            run_chain(chain, self.header_bytes, self.acquisitions(), self.send, result)
            return result
        finally:
            for _ in self.acquisitions():  # a scan that stopped early: read the client's data to its CLOSE
                pass


class MrdServer(AcceptLoop):
    """Accepts MRD clients, one scan per connection, scans queued; ``serve_forever`` / ``shutdown``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9002, idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
                 chains: Path = CHAINS, overrides: Optional[Dict[str, str]] = None):
        super().__init__(host, port, idle_timeout)
        self.chains = chains
        self.overrides = dict(overrides or {})
        self._queue = threading.Lock()  # one scan reconstructs at a time; the others wait their turn

    def _serve_one(self, client: socket.socket, peer):
        self.scans += 1
        number, start = self.scans, time.perf_counter()
        link = _Socket(client, self.idle_timeout)
        scan = Scan(link, self.chains)
        errors, status = [], "ok"
        try:
            with self._queue:
                errors = scan.run(self.overrides).errors
        except ConnectionDroppedError as exc:
            status = f"client gone ({exc})"
        except (GadgetError, ChainConfigError, ValueError, OSError) as exc:
            errors = [f"{type(exc).__name__}: {exc}"]
        except Exception as exc:  # noqa: BLE001 - a failing scan never takes the server down
            log.exception("scan %d: unexpected failure", number)
            errors = [f"{type(exc).__name__}: {exc}"]
        if errors:
            self.failures += 1
            status = f"FAILED: {'; '.join(errors)}"
        try:
            for text in errors:
                link.send_text(f"ERROR {text}")
            if not status.startswith("client gone"):
                link.send_close()
        except OSError:
            pass
        finally:
            client.close()
        log.info("scan %d from %s: chain %s, %d slice(s), %d image(s), %.1f s, %s", number, peer[0],
                 scan.config_name, scan.slices, scan.images, time.perf_counter() - start, status)
