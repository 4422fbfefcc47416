"""Resident-model server for Gadgetron's ``<connect>`` externals (``dps-gadgetron serve``).

``gadgetron.external.listen`` accepts a single connection and binds every
interface; a scanner needs more: :class:`GadgetServer` binds loopback unless
told otherwise, accepts connections in a loop (one scan per connection, each in
its own thread), keeps the prior loaded between scans (:mod:`models.prior.shipped`
caches it; reconstructions queue on the device lock of :mod:`gadgets.dps_recon`),
logs one line per scan (slices, seconds, device) and survives a failing scan:
the error is sent to Gadgetron and logged, the connection is closed, the server
goes on.
"""

import logging
import socket
import threading
import time
from typing import Callable, Optional

from gadgetron.external.connection import Connection

from gadgets.protocol import DEFAULT_IDLE_TIMEOUT_S, harden, report_error

log = logging.getLogger(__name__)


class AcceptLoop:
    """A loopback-by-default TCP server: one thread per connection, ``serve_forever`` / ``shutdown``.

    Subclasses implement ``_serve_one(client, peer)``; the loop wakes twice a second to notice
    :meth:`shutdown` and joins the connection threads before returning.
    """

    def __init__(self, host: str, port: int, idle_timeout: float):
        self.idle_timeout = idle_timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.sock.settimeout(0.5)  # the accept loop wakes up to notice shutdown()
        self.address = self.sock.getsockname()[:2]
        self.scans = 0
        self.failures = 0
        self._stop = threading.Event()
        self._threads = []

    @property
    def port(self) -> int:
        return int(self.address[1])

    def _serve_one(self, client: socket.socket, peer):
        raise NotImplementedError

    def serve_forever(self, max_scans: Optional[int] = None):
        log.info("%s on %s:%d", type(self).__name__, *self.address)
        accepted = 0
        while not self._stop.is_set() and (max_scans is None or accepted < max_scans):
            try:
                client, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            accepted += 1
            thread = threading.Thread(target=self._serve_one, args=(client, peer), daemon=True)
            thread.start()
            self._threads.append(thread)
        for thread in self._threads:
            thread.join()

    def shutdown(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass


class GadgetServer(AcceptLoop):
    def __init__(self, handler: Callable, host: str = "127.0.0.1", port: int = 9003,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S, device: str = "auto"):
        super().__init__(host, port, idle_timeout)
        self.handler = handler
        self.device = device

    def _serve_one(self, client: socket.socket, peer):
        scan = self.scans = self.scans + 1
        start = time.perf_counter()
        client.settimeout(self.idle_timeout)
        try:
            connection = Connection.__new__(Connection)
            # gadgetron-python's constructor reads config + header through a reader that spins on a
            # dropped socket: harden the socket wrapper first, then run the constructor's steps.
            connection.socket = Connection.SocketWrapper(client)
            harden(connection, self.idle_timeout)
            connection.readers = Connection._default_readers()
            connection.writers = Connection._default_writers()
            connection.raw_bytes = Connection.Struct(config=None, header=None)
            connection.config, connection.raw_bytes.config = connection._read_config()
            connection.header, connection.raw_bytes.header = connection._read_header()
            connection.filters = []
        except Exception as exc:
            self.failures += 1
            log.error("scan %d from %s: could not start (%s: %s)", scan, peer, type(exc).__name__, exc)
            client.close()
            return
        slices, status = 0, "ok"
        try:
            with connection:
                slices = self.handler(connection) or 0
        except Exception as exc:  # a failing scan never takes the server down
            self.failures += 1
            status = f"FAILED ({type(exc).__name__}: {exc})"
            try:
                report_error(connection, f"scan {scan}: {type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the socket may be gone
                pass
        finally:
            try:
                client.close()
            except OSError:
                pass
        log.info("scan %d from %s: %d slice(s), %.1f s, device %s, %s", scan, peer[0], slices,
                 time.perf_counter() - start, self.device, status)
