"""Run the fake CloudSync as its own process, until Ctrl-C or SIGTERM.

    python -m django_cloudsync.testing --host 127.0.0.1 --port 8765 --token-lifetime 3600

For a multi-process soak test, or to point a development site at it. The first line on stdout
is ``Fake CloudSync listening on <url>`` (with ``--port 0``, the port chosen); steer the fake
through its ``/_fake/`` control endpoints. Only loopback hosts are accepted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from .fake import FakeCloudSync
from .server import FakeCloudSyncServer, is_loopback_host


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m django_cloudsync.testing",
        description="Run the fake CloudSync authorization server and API on a loopback address.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="expires_in, seconds")
    parser.add_argument("--client-id", default="fake-client-id")
    parser.add_argument("--client-secret", default="fake-client-secret")
    parser.add_argument(
        "--no-rotate-refresh-tokens",
        dest="rotate_refresh_tokens",
        action="store_false",
        help="keep refresh tokens on refresh instead of rotating them",
    )
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        parser.error(
            f"--host must be a loopback address (the fake hands out tokens to anyone), not {args.host}"
        )
    if args.token_lifetime < 0:
        parser.error("--token-lifetime must not be negative")
    return args


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Let ``finally`` stop the server when a supervisor terminates the process."""
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; return the process exit status."""
    args = _parse_args(argv)
    fake = FakeCloudSync(
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_lifetime=args.token_lifetime,
        rotate_refresh_tokens=args.rotate_refresh_tokens,
    )
    server = FakeCloudSyncServer(fake, host=args.host, port=args.port).start()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # The client secret is never printed: the caller chose it, or it is the documented default.
    print(f"Fake CloudSync listening on {server.url} (client_id={fake.client_id})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
