"""`explorer dashboard`: serve the Streamlit Pareto dashboard for a study storage."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path

from explorer.core.errors import UserError

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
STORAGE_ENV = "EXPLORER_STORAGE"


def register(subparsers) -> None:
    """Add the `dashboard` subcommand."""
    p = subparsers.add_parser("dashboard", help="browse studies' accuracy-vs-size Pareto fronts",
                              description="Serve the Streamlit dashboard (read-only access).")
    p.add_argument("--storage", default=None,
                   help=f"study storage: a .journal file or an RDB URL such as sqlite:///studies.db "
                        f"(default: ${STORAGE_ENV}, else the only runs/*.journal; the page "
                        "also lets you type one)")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; the dashboard has no login)")
    p.set_defaults(func=run)


def streamlit_command(app: Path, host: str, port: int) -> list[str]:
    """The `python -m streamlit run` command line (the storage travels in the environment)."""
    return [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", host, "--server.port", str(port),
            "--browser.gatherUsageStats", "false", "--server.headless", "true",
            "--client.toolbarMode", "viewer"]


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is out of range: use 1..65535")
    if not APP.is_file():
        raise UserError(f"the dashboard app {APP} is missing: reinstall explorer from a checkout")
    path = (args.storage or "").removeprefix("journal:")
    if path and "://" not in path and not Path(path).exists():
        raise UserError(f"storage file {path} does not exist: check the path "
                        "(run a study first; the dashboard never creates one)")


def _default_storage() -> str:
    """$EXPLORER_STORAGE, else the only journal under runs/ (explorer run's default place)."""
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    found = sorted(Path("runs").glob("*.journal"))
    if len(found) > 1:
        print(f"explorer dashboard: {len(found)} journals under runs/; pick one in the page or "
              "pass --storage", file=sys.stderr)
    return str(found[0]) if len(found) == 1 else ""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args: argparse.Namespace) -> int:
    """Start Streamlit in a subprocess and wait for it (Ctrl-C stops it)."""
    _check(args)
    from explorer.store import mask_url

    env = dict(os.environ)
    storage = args.storage or _default_storage()
    # Passed in the environment, not argv: argv (with any password) is visible in `ps`.
    env[STORAGE_ENV] = storage
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP.parents[1]), env.get("PYTHONPATH")]))
    where = mask_url(storage) if storage else "(none given: type one in the page)"
    print(f"explorer dashboard: {where} at http://{args.host}:{args.port}", flush=True)
    if not _is_loopback(args.host):
        print(f"explorer dashboard: warning: listening on {args.host}; anyone who can reach it "
              "can read the studies (there is no login)", file=sys.stderr, flush=True)
    return serve(streamlit_command(APP, args.host, args.port), env)


def serve(cmd: list[str], env: dict[str, str]) -> int:
    """Run the server until it exits; Ctrl-C or SIGTERM here stops it too (no orphan)."""
    proc = subprocess.Popen(cmd, env=env)
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
