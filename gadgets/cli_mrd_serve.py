"""``dps-gadgetron mrd-serve``: the reconstruction as an MRD App (FIRE / OpenRecon streaming server)."""

from gadgets.cli_common import add_server_arguments, preload_prior, serve_until_stopped


HELP = ("serve the chains of config_xml/ to MRD streaming clients (FIRE / OpenRecon MRD Apps; "
        "loopback by default)")


def add_arguments(parser):
    parser.add_argument("--port", "-p", type=int, default=9002, help="TCP port (default 9002, the MRD App port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 only when asked, e.g. in a container)")
    parser.add_argument("--device", default="auto",
                        help="device of gadgets.dps_recon in every chain: auto, cpu, cuda, cuda:N (default auto)")
    add_server_arguments(parser, "a client's scan")


def run(args) -> int:
    from gadgets.mrd_server import MrdServer

    if args.preload:
        preload_prior(args.preload, args.device)
    server = MrdServer(host=args.host, port=args.port, idle_timeout=args.idle_timeout,
                       overrides={"gadgets.dps_recon.device": args.device})
    return serve_until_stopped(server, args.max_scans)
