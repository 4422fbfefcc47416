"""What the two server subcommands (``serve``, ``mrd-serve``) share: preloading the prior and running
a server until it is stopped."""

import argparse
import logging

log = logging.getLogger(__name__)


def add_server_arguments(parser, idle_what: str):
    parser.add_argument("--preload", metavar="CHECKPOINT",
                        help="load this prior (or 'shipped') at start instead of at the first scan")
    parser.add_argument("--idle-timeout", type=float, default=3600.0,
                        help=f"seconds without data before {idle_what} is given up (default 3600)")
    parser.add_argument("--max-scans", type=int, default=None, help=argparse.SUPPRESS)


def preload_prior(checkpoint: str, device: str) -> str:
    """Load ``checkpoint`` (``shipped``: the bundled prior) into the per-process cache on ``device``, so
    that scans naming the same checkpoint and device reuse it; returns the resolved device."""
    from models.devices import resolve_device
    from models.prior.shipped import load_cached, shipped_checkpoint

    resolved = resolve_device(device)
    load_cached(shipped_checkpoint() if checkpoint == "shipped" else checkpoint, resolved)
    return str(resolved)


def serve_until_stopped(server, max_scans=None) -> int:
    try:
        server.serve_forever(max_scans=max_scans)
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.shutdown()
    return 0
