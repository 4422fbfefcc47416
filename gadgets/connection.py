"""An in-process connection with gadgetron-python's ``Connection`` interface.

Offline replay runs our gadgets exactly as Gadgetron would, but instead of a
socket the connection reads items from an iterable and hands what the gadget
sends to a ``sink`` callable. The interface is the one gadgets use:
iteration (``__iter__``, ``iter_with_mids``, ``next``), ``send``, ``filter``
(items failing a predicate go straight to the sink, as gadgetron-python
returns them to Gadgetron), ``header`` (the parsed ISMRMRD header),
``config`` (the ``<configuration>`` element) and ``raw_bytes``.

``report_error`` receives what a gadget would send as Gadgetron's ERROR
message (see :mod:`gadgets.protocol`); the errors are kept in ``errors``.
"""

import xml.etree.ElementTree as ET
from typing import Callable, Iterable, List, Optional

import ismrmrd

from gadgetron.external import constants
from gadgetron.types.image_array import ImageArray
from gadgetron.types.recon_data import ReconData


def message_id(item) -> int:
    """Gadgetron message id of an item (as gadgetron-python's writers would send it)."""
    if isinstance(item, ismrmrd.Acquisition):
        return constants.GADGET_MESSAGE_ISMRMRD_ACQUISITION
    if isinstance(item, ismrmrd.Waveform):
        return constants.GADGET_MESSAGE_ISMRMRD_WAVEFORM
    if isinstance(item, ismrmrd.Image):
        return constants.GADGET_MESSAGE_ISMRMRD_IMAGE
    if isinstance(item, ImageArray):
        return constants.GADGET_MESSAGE_IMAGE_ARRAY
    if isinstance(item, ReconData):
        return constants.GADGET_MESSAGE_RECON_DATA
    raise TypeError(f"No appropriate writer found for item of type '{type(item)}'")


class InProcessConnection:
    """Connection over Python objects: ``items`` in, ``sink(item)`` out."""

    class Struct:
        def __init__(self, **fields):
            self.__dict__.update(fields)

    def __init__(self, items: Iterable, header, config: Optional[ET.Element], sink: Callable,
                 header_bytes: bytes = b"", config_bytes: bytes = b""):
        self._items = iter(items)
        self.header = header
        self.config = config
        self.sink = sink
        self.filters: List[Callable] = []
        self.errors: List[str] = []
        self.raw_bytes = InProcessConnection.Struct(config=config_bytes, header=header_bytes)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def filter(self, predicate):
        """Only items satisfying every predicate (a type or a callable) reach the gadget."""
        if isinstance(predicate, type):
            kind = predicate
            predicate = lambda item: isinstance(item, kind)  # noqa: E731
        self.filters.append(predicate)

    def send(self, item):
        message_id(item)  # same TypeError as gadgetron-python for an unsendable item
        self.sink(item)

    def report_error(self, text: str):
        """What :func:`gadgets.protocol.report_error` sends as an ERROR message."""
        self.errors.append(text)

    def next(self):
        for item in self._items:
            if all(pred(item) for pred in self.filters):
                return message_id(item), item
            self.sink(item)
        raise StopIteration

    def __next__(self):
        return self.next()

    def iter_with_mids(self):
        while True:
            try:
                yield self.next()
            except StopIteration:
                return

    def __iter__(self):
        for _, item in self.iter_with_mids():
            yield item
