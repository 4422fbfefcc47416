"""Robustness on gadgetron-python's socket ``Connection``: dropped peers and error reports.

Two gaps of gadgetron-python 1.4 that matter on a scanner:

- its socket reader loops forever when the peer closes the socket (``recv``
  returns no bytes), so a dropped Gadgetron leaves the Python process spinning.
  :func:`harden` replaces the reader with one that raises
  :class:`ConnectionDroppedError` on end-of-stream or after ``idle_timeout`` s;
- it has no way to send Gadgetron's ERROR message (id 8: a uint64 length and
  the text). Without it an exception looks to Gadgetron like a normal close.
  :func:`report_error` writes one; Gadgetron then fails the scan with that text
  (after delivering what was sent before it).

And a third: when the peer goes away mid-scan (Gadgetron killed, its connection process gone) with
slices still in our socket buffer, the gadget would reconstruct them all for nobody before a read or
write failed. :func:`peer_closed` lets a gadget see the hang-up between slices. (A Gadgetron whose own
client dies keeps our socket open and the gadget finishes the slices it holds, at most the rest of
the scan; ``tests/test_real_gadgetron.py`` checks that the next scan is served meanwhile.)

All accept :class:`gadgets.connection.InProcessConnection`.
"""

import logging
import select
import socket

from gadgetron.external import constants

from gadgets.errors import ConnectionDroppedError

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT_S = 3600.0
_POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)  # Linux; the peer shut down its writing half


def _robust_reader(raw_socket, idle_timeout):
    def read(nbytes):
        chunks, received = [], 0
        while received < nbytes:
            try:
                chunk = raw_socket.recv(nbytes - received)
            except socket.timeout:
                raise ConnectionDroppedError(f"no data from the peer for {idle_timeout:g} s") from None
            except OSError as exc:
                raise ConnectionDroppedError(f"socket error while reading: {exc}") from None
            if not chunk:
                raise ConnectionDroppedError(
                    f"peer closed the connection mid-stream ({received} of {nbytes} bytes of a message read)")
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)

    return read


def harden(connection, idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S):
    """Make reads on a socket connection fail loudly instead of spinning or blocking forever."""
    wrapper = getattr(connection, "socket", None)
    raw = getattr(wrapper, "socket", None)
    if raw is None:  # in-process connection: nothing to do
        return connection
    raw.settimeout(idle_timeout if idle_timeout and idle_timeout > 0 else None)
    wrapper.read = _robust_reader(raw, idle_timeout)
    return connection


def peer_closed(connection) -> bool:
    """Whether the peer has closed (or reset) its end of the socket, without reading anything.

    Meant for mid-stream, before our CLOSE is sent: Gadgetron keeps its end open until it has read our
    output, so a hang-up then means it will never read it. ``POLLRDHUP`` reports the peer's FIN even while
    its last messages are still unread in our buffer (a ``recv`` peek would only see those). In-process
    connections never close.
    """
    raw = getattr(getattr(connection, "socket", None), "socket", None)
    if raw is None:
        return False
    try:
        poller = select.poll()
        poller.register(raw, select.POLLIN | _POLLRDHUP | select.POLLHUP | select.POLLERR)
        events = poller.poll(0)
    except (OSError, ValueError):  # the socket is already closed on our side
        return True
    return any(flags & (_POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, flags in events)


def error_message_bytes(text: str) -> bytes:
    """Gadgetron's ERROR message: id 8, uint64 length, UTF-8 text."""
    data = text.encode("utf-8", errors="replace")
    return constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_ERROR) + constants.uint64.pack(len(data)) + data


def report_error(connection, text: str) -> None:
    """Tell the peer (Gadgetron or the replay runner) that the scan lost something."""
    log.error("%s", text)
    if hasattr(connection, "report_error"):
        connection.report_error(text)
        return
    wrapper = getattr(connection, "socket", None)
    if wrapper is None:
        return
    try:
        wrapper.write(error_message_bytes(text))
    except OSError as exc:  # the peer is gone; the log line above is all we can do
        log.error("could not send the error to the peer: %s", exc)
