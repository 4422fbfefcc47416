"""``dps-gadgetron serve``: keep the prior loaded and serve Gadgetron's ``<connect>`` nodes."""

import logging
log = logging.getLogger(__name__)

HELP = "serve gadgets.dps_recon to Gadgetron <connect> nodes with the prior kept loaded (loopback by default)"


def add_arguments(parser):
    parser.add_argument("--port", "-p", type=int, default=9003, help="TCP port (default 9003, as in config_xml/*_connect.xml)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; use 0.0.0.0 only behind a firewall)")
    parser.add_argument("--gadget", default="dps_recon", choices=("dps_recon", "coil_sensitivity"),
                        help="which of our gadgets to serve (default dps_recon)")
    parser.add_argument("--preload", metavar="CHECKPOINT",
                        help="load this prior (or 'shipped') at start instead of at the first scan")
    parser.add_argument("--device", default="auto", help="device for --preload: auto, cpu, cuda, cuda:N")
    parser.add_argument("--idle-timeout", type=float, default=3600.0,
                        help="seconds without data before a scan's connection is given up (default 3600)")
    parser.add_argument("--max-scans", type=int, default=None, help=argparse_suppress())


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def run(args) -> int:
    from gadgets.server import GadgetServer

    if args.gadget == "coil_sensitivity":
        from gadgets.coil_sensitivity import coil_sensitivity as handler
    else:
        from gadgets.dps_recon import dps_recon as handler
    device = args.device
    if args.preload:
        from models.prior.shipped import load_cached, shipped_checkpoint
        from models.devices import resolve_device

        resolved = resolve_device(args.device)
        path = shipped_checkpoint() if args.preload == "shipped" else args.preload
        load_cached(path, resolved)  # later scans naming the same checkpoint and device reuse it
        device = str(resolved)
    server = GadgetServer(handler, host=args.host, port=args.port, idle_timeout=args.idle_timeout, device=device)
    try:
        server.serve_forever(max_scans=args.max_scans)
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.shutdown()
    return 0

