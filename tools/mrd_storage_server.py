"""A minimal stand-in for the MRD storage server, so that Gadgetron's server mode runs where the real one
(github.com/ismrmrd/mrd-storage-server, a Go program) is not installed.

Why: in server mode Gadgetron's NoiseAdjust stores the noise covariance of each scan in the storage
server and, with storage disabled (``-d 1``), the store throws and no acquisition reaches the
reconstruction. Streaming mode does not need it (``--parameter noisecovarianceout=FILE``). Start this,
then Gadgetron with ``-E http://localhost:PORT``:

    python tools/mrd_storage_server.py --port 9112 &
    gadgetron -p 9002 -E http://localhost:9112

It serves the part of the storage API that Gadgetron's client uses (``core/Storage.cpp``):
``GET /healthcheck``, ``POST /v1/blobs/data?TAGS`` (201 and the item's JSON), ``GET /v1/blobs/data/latest?TAGS``
(the newest matching blob, or 404), ``GET /v1/blobs?TAGS&_limit=N`` (the item list, newest first) and
``GET /v1/blobs/data/ID`` (an item's ``location``). Blobs live in memory only: a test double and a
bench tool, not a store for a scanner (use the real server there).
"""

import argparse
import itertools
import json
import logging
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("mrd_storage_server")
RESERVED = {"_ttl", "_limit", "_ct"}  # query keys that are options, not tags


def parse_ttl(text: str) -> timedelta:
    """The storage API's time to live: Go durations as Gadgetron writes them (``172800s``, ``48h``, ``30m``)."""
    units = {"s": 1, "m": 60, "h": 3600}
    if not text or text[-1] not in units:
        raise ValueError(f"time to live {text!r}: expected a number and s, m or h")
    return timedelta(seconds=float(text[:-1]) * units[text[-1]])


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # what Gadgetron parses: date::parse("%FT%TZ")


class BlobStore:
    """Blobs with their tags, in memory, newest last; thread safe."""

    def __init__(self):
        self._items, self._lock, self._ids = [], threading.Lock(), itertools.count(1)

    def put(self, tags: dict, data: bytes, content_type: str, ttl: timedelta) -> dict:
        now = datetime.now(timezone.utc)
        with self._lock:
            item = {"id": str(next(self._ids)), "tags": tags, "data": data, "contentType": content_type,
                    "lastModified": now, "expires": now + ttl}
            self._items.append(item)
        return item

    def find(self, query: dict) -> list:
        """Items whose tags include every queried tag and that have not expired, newest first."""
        now = datetime.now(timezone.utc)
        with self._lock:
            live = [i for i in self._items if i["expires"] > now]
            return [i for i in reversed(live) if all(i["tags"].get(k) == v for k, v in query.items())]

    def get(self, item_id: str):
        with self._lock:
            return next((i for i in self._items if i["id"] == item_id), None)


class StorageHandler(BaseHTTPRequestHandler):
    store: BlobStore  # set on the class made by make_server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)

    def _reply(self, status: int, body: bytes = b"", content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str):
        self._reply(status, json.dumps({"error": message}).encode())

    def _body(self) -> bytes:
        """The request body, plain or chunked (Gadgetron's client sends ``Transfer-Encoding: chunked``)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _query(self):
        url = urlsplit(self.path)
        pairs = parse_qsl(url.query, keep_blank_values=True)
        return url.path, {k: v for k, v in pairs if k not in RESERVED}, {k: v for k, v in pairs if k in RESERVED}

    def _describe(self, item: dict) -> dict:
        host = self.headers.get("Host", f"localhost:{self.server.server_address[1]}")
        return {**item["tags"], "contentType": item["contentType"], "location": f"http://{host}/v1/blobs/data/{item['id']}",
                "lastModified": timestamp(item["lastModified"]), "expires": timestamp(item["expires"])}

    def do_GET(self):
        path, tags, options = self._query()
        if path == "/healthcheck":
            return self._reply(200, b'{"status":"ok"}')
        if path == "/v1/blobs/data/latest":
            if "subject" not in tags:
                return self._error(400, "subject is required")
            found = self.store.find(tags)
            if not found:
                return self._error(404, "no blob with these tags")
            return self._reply(200, found[0]["data"], found[0]["contentType"])
        if path.startswith("/v1/blobs/data/"):
            item = self.store.get(path.rsplit("/", 1)[1])
            return self._error(404, "no such blob") if item is None else \
                self._reply(200, item["data"], item["contentType"])
        if path == "/v1/blobs":
            limit = int(options.get("_limit", 20))
            items = [self._describe(i) for i in self.store.find(tags)[:limit]]
            return self._reply(200, json.dumps({"items": items}).encode())
        return self._error(404, f"unknown path {path}")

    def do_POST(self):
        path, tags, options = self._query()
        if path != "/v1/blobs/data":
            return self._error(404, f"unknown path {path}")
        data = self._body()
        if not tags.get("subject"):
            return self._error(400, "subject is required")
        try:
            ttl = parse_ttl(options.get("_ttl", "48h"))
        except ValueError as error:
            return self._error(400, str(error))
        item = self.store.put(tags, data, self.headers.get("Content-Type", "application/octet-stream"), ttl)
        log.info("stored %d bytes as %s", len(data), tags)
        return self._reply(201, json.dumps(self._describe(item)).encode())


def make_server(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server on ``host:port`` (0: a free port; read it from ``server.server_address``), not yet serving."""
    handler = type("Handler", (StorageHandler,), {"store": BlobStore()})
    return ThreadingHTTPServer((host, port), handler)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9112, help="0 picks a free one (printed at start)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s")
    server = make_server(args.host, args.port)
    log.info("MRD storage stand-in on http://%s:%d", *server.server_address[:2])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
