"""tools/mrd_storage_server.py speaks the part of the MRD storage API that Gadgetron's client uses
(core/Storage.cpp): chunked uploads, newest-first lookup by tags, 404 for none, item lists."""

import http.client
import json
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from mrd_storage_server import make_server, parse_ttl  # noqa: E402


@pytest.fixture
def server():
    srv = make_server("127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv, method, path, body=None, chunked=False):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    if chunked:  # as Gadgetron's curl client sends it
        conn.putrequest(method, path)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for part in (body[:5], body[5:]):
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
    else:
        conn.request(method, path, body=body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def test_store_then_latest_by_tags_newest_first(server):
    assert request(server, "GET", "/healthcheck")[0] == 200
    tags = "?subject=s1&name=noise_covariance&measurement=m1"
    status, body = request(server, "POST", "/v1/blobs/data" + tags + "&_ttl=172800s", b"first-blob", chunked=True)
    assert status == 201
    item = json.loads(body)
    assert item["subject"] == "s1" and item["lastModified"].endswith("Z") and "location" in item
    request(server, "POST", "/v1/blobs/data" + tags, b"second-blob", chunked=True)
    assert request(server, "GET", "/v1/blobs/data/latest" + tags) == (200, b"second-blob")
    assert request(server, "GET", "/v1/blobs/data/latest?subject=s1&name=noise_covariance&measurement=m2")[0] == 404
    status, listing = request(server, "GET", "/v1/blobs" + tags + "&_limit=5")
    assert status == 200 and len(json.loads(listing)["items"]) == 2
    location = item["location"].split(str(server.server_address[1]), 1)[1]
    assert request(server, "GET", location) == (200, b"first-blob")


def test_bad_requests_are_refused_with_a_reason(server):
    status, body = request(server, "POST", "/v1/blobs/data?name=x", b"data")
    assert status == 400 and b"subject" in body
    assert request(server, "POST", "/v1/blobs/data?subject=s&_ttl=forever", b"data")[0] == 400
    assert parse_ttl("48h").total_seconds() == 172800
