"""``python -m integrations.sandbox [--host 127.0.0.1] [--base-port 8101] [--verbose]``."""

from __future__ import annotations

import argparse

from integrations.sandbox.runner import DEFAULT_BASE_PORT, default_ports, run_all, serve_forever


def main(argv: list[str] | None = None) -> None:
    """Start every sandbox server on fixed local ports and run until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m integrations.sandbox",
        description="Local imitations of Zoho PhoneBridge, RingRx, a generic CRM, an SMS provider.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help="zoho=base, ringrx=base+1, crm=base+2, sms=base+3",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        servers = run_all(default_ports(args.base_port), host=args.host, verbose=args.verbose)
    except ValueError as error:
        parser.error(str(error))
    serve_forever(servers)


if __name__ == "__main__":
    main()
