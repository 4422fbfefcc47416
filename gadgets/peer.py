"""Gadgetron's side of the external-node protocol, as a small socket client.

What Gadgetron does when it reaches an ``<external>`` node: it connects (or,
for ``<execute>``, accepts the child's connection), sends CONFIG (id 2, the
node's ``<configuration>`` element as a uint32-length string), HEADER (id 3,
the ISMRMRD header XML), then the stream's messages, then CLOSE (id 4); it reads
messages back until the node's CLOSE, collecting ERROR messages (id 8,
uint64-length text) on the way. :class:`GadgetronPeer` does exactly that
with gadgetron-python's own readers and writers, so a Python node behind a
real ``gadgetron.external.Connection`` sees the same bytes as under Gadgetron.

Used by the protocol tests, by the replay of ``<connect>`` chains (it dials the
resident server) and by ``serve``'s self-check.
"""

import logging
import socket
import threading
from typing import Callable, Iterable, List, Optional

import ismrmrd

from gadgetron.external import constants, readers, writers
from gadgetron.types.image_array import ImageArray, read_image_array, write_image_array
from gadgetron.types.recon_data import ReconData, read_recon_data, write_recon_data

from gadgets.errors import ConnectionDroppedError, GadgetError

log = logging.getLogger(__name__)

READERS = {
    constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION: readers.read_acquisition,
    constants.GADGET_MESSAGE_ISMRMRD_WAVEFORM: readers.read_waveform,
    constants.GADGET_MESSAGE_ISMRMRD_IMAGE: readers.read_image,
    constants.GADGET_MESSAGE_IMAGE_ARRAY: read_image_array,
    constants.GADGET_MESSAGE_RECON_DATA: read_recon_data,
}


def write_item(stream, item) -> None:
    if isinstance(item, ismrmrd.Acquisition):
        writers.write_acquisition(stream, item)
    elif isinstance(item, ismrmrd.Waveform):
        writers.write_waveform(stream, item)
    elif isinstance(item, ismrmrd.Image):
        writers.write_image(stream, item)
    elif isinstance(item, ImageArray):
        write_image_array(stream, item)
    elif isinstance(item, ReconData):
        write_recon_data(stream, item)
    else:
        raise TypeError(f"no Gadgetron message for {type(item).__name__}")


class _Stream:
    """``read(n)`` / ``write(bytes)`` over a socket, failing on end-of-stream."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def read(self, nbytes: int) -> bytes:
        chunks, got = [], 0
        while got < nbytes:
            chunk = self.sock.recv(nbytes - got)
            if not chunk:
                raise ConnectionDroppedError(f"external node closed the socket mid-message ({got}/{nbytes} bytes)")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def write(self, data) -> None:
        self.sock.sendall(bytes(data) if not isinstance(data, (bytes, bytearray)) else data)


class PeerResult:
    def __init__(self):
        self.items: List[object] = []
        self.errors: List[str] = []
        self.closed_normally = False
        self.failure: Optional[BaseException] = None


class GadgetronPeer:
    """Drive one external node over a socket the way Gadgetron does."""

    def __init__(self, sock: socket.socket, timeout: float = 600.0):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.stream = _Stream(sock)

    @classmethod
    def connect(cls, address: str, port: int, timeout: float = 600.0) -> "GadgetronPeer":
        return cls(socket.create_connection((address, int(port)), timeout=timeout), timeout)

    def _receive(self, result: PeerResult, on_item: Optional[Callable]):
        try:
            while True:
                mid = readers.read(self.stream, constants.GadgetMessageIdentifier)
                if mid == constants.GADGET_MESSAGE_CLOSE:
                    result.closed_normally = True
                    return
                if mid == constants.GADGET_MESSAGE_ERROR:
                    text = readers.read_byte_string(self.stream, constants.uint64).decode("utf-8", "replace")
                    result.errors.append(text)
                    continue
                if mid not in READERS:
                    raise GadgetError(f"external node sent an illegal message id {mid}")
                item = READERS[mid](self.stream)
                result.items.append(item)
                if on_item is not None:
                    on_item(item)
        except (OSError, GadgetError) as exc:
            result.failure = exc

    def run(self, config_xml: bytes, header_xml: bytes, items: Iterable, on_item: Optional[Callable] = None,
            close: bool = True) -> PeerResult:
        """Send config, header, ``items`` (and CLOSE); return what came back once the node closes."""
        result = PeerResult()
        receiver = threading.Thread(target=self._receive, args=(result, on_item), daemon=True)
        receiver.start()
        try:
            self.stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CONFIG))
            writers.write_byte_string(self.stream, config_xml)
            self.stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_HEADER))
            writers.write_byte_string(self.stream, header_xml)
            for item in items:
                write_item(self.stream, item)
            if close:
                self.stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CLOSE))
        except OSError as exc:
            result.failure = ConnectionDroppedError(f"could not send to the external node: {exc}")
        receiver.join()
        self.sock.close()
        return result
