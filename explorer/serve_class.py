"""Share the app with a class: `python -m explorer.serve_class [--port 8501]`.

Starts Streamlit in classroom mode on every network interface, with this machine's names
and address allowed as hosts (the config file allows only localhost), after checking that
the access code and the teacher password are set (explorer.identity: environment or
.streamlit/secrets.toml), and prints the address to write on the board."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tomllib
from pathlib import Path

from explorer.identity import ClassroomConfigError, load_settings

REPO = Path(__file__).resolve().parents[1]
SECRETS = REPO / ".streamlit" / "secrets.toml"


def lan_address() -> str | None:
    """The address other machines on the network reach this one at (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return None


def command(port: int, hosts: list[str]) -> list[str]:
    allowed = [arg for host in dict.fromkeys(hosts) for arg in ("--server.allowedHosts", host)]
    return [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.address", "0.0.0.0",
            "--server.port", str(port), *allowed]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m explorer.serve_class", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args(argv)
    os.environ["LM_CLASSROOM"] = "1"
    stored = tomllib.loads(SECRETS.read_text(encoding="utf-8")) if SECRETS.is_file() else {}
    try:
        settings = load_settings(os.environ, stored)
    except (ClassroomConfigError, tomllib.TOMLDecodeError) as exc:
        parser.exit(2, f"error: {exc}\n")
    address = lan_address()
    hosts = ["localhost", "127.0.0.1", socket.gethostname(), *([address] if address else [])]
    print(f"Students open http://{address or socket.gethostname()}:{args.port} and sign in with the access code; "
          f"{settings.slots} runs train at once, the rest wait in line.", flush=True)
    os.execv(sys.executable, command(args.port, hosts))


if __name__ == "__main__":
    main()
