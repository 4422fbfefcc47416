"""``dps-gadgetron mrd-serve``: the reconstruction as an MRD App (FIRE / OpenRecon streaming server)."""

import logging

log = logging.getLogger(__name__)

HELP = ("serve the chains of config_xml/ to MRD streaming clients (FIRE / OpenRecon MRD Apps; "
        "loopback by default)")


def add_arguments(parser):
    parser.add_argument("--port", "-p", type=int, default=9002, help="TCP port (default 9002, the MRD App port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 only when asked, e.g. in a container)")
    parser.add_argument("--device", default="auto",
                        help="device of gadgets.dps_recon in every chain: auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--preload", metavar="CHECKPOINT",
                        help="load this prior (or 'shipped') at start instead of at the first scan")
    parser.add_argument("--idle-timeout", type=float, default=3600.0,
                        help="seconds without data before a client's scan is given up (default 3600)")
    parser.add_argument("--max-scans", type=int, default=None, help=argparse_suppress())


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def run(args) -> int:
    from gadgets.mrd_server import MrdServer

    if args.preload:
        from models.prior.shipped import load_cached, shipped_checkpoint
        from models.devices import resolve_device

        path = shipped_checkpoint() if args.preload == "shipped" else args.preload
        load_cached(path, resolve_device(args.device))  # scans naming the same checkpoint and device reuse it
    server = MrdServer(host=args.host, port=args.port, idle_timeout=args.idle_timeout,
                       overrides={"gadgets.dps_recon.device": args.device})
    try:
        server.serve_forever(max_scans=args.max_scans)
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.shutdown()
    return 0
