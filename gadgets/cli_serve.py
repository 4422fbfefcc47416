"""``dps-gadgetron serve``: keep the prior loaded and serve Gadgetron's ``<connect>`` nodes."""

from gadgets.cli_common import add_server_arguments, preload_prior, serve_until_stopped

HELP = "serve gadgets.dps_recon to Gadgetron <connect> nodes with the prior kept loaded (loopback by default)"


def add_arguments(parser):
    parser.add_argument("--port", "-p", type=int, default=9003, help="TCP port (default 9003, as in config_xml/*_connect.xml)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; use 0.0.0.0 only behind a firewall)")
    parser.add_argument("--gadget", default="dps_recon", choices=("dps_recon", "coil_sensitivity"),
                        help="which of our gadgets to serve (default dps_recon)")
    parser.add_argument("--device", default="auto", help="device for --preload: auto, cpu, cuda, cuda:N")
    add_server_arguments(parser, "a scan's connection")


def run(args) -> int:
    from gadgets.server import GadgetServer

    if args.gadget == "coil_sensitivity":
        from gadgets.coil_sensitivity import coil_sensitivity as handler
    else:
        from gadgets.dps_recon import dps_recon as handler
    device = args.device
    if args.preload:
        device = preload_prior(args.preload, args.device)
    server = GadgetServer(handler, host=args.host, port=args.port, idle_timeout=args.idle_timeout, device=device)
    return serve_until_stopped(server, args.max_scans)

