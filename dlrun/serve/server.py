"""Serving the app with uvicorn on a socket bound here, so `--port 0` gets a free port and the caller learns which
one before the first request (`on_ready` runs once uvicorn has started serving on it)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Callable

from dlrun.core.errors import ConfigError
from dlrun.serve.app import DEFAULT_MAX_ROWS, create_app


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 8000, max_rows: int = DEFAULT_MAX_ROWS,
          on_ready: Callable[[str], None] = lambda url: None) -> None:
    """Load the run once, bind host:port and serve until interrupted (Ctrl-C, SIGTERM); `on_ready(url)` is called
    when requests are answered."""
    import uvicorn

    if max_rows < 1:
        raise ConfigError(f"--max-rows must be at least 1, got {max_rows}")
    app = create_app(run_dir, max_rows)
    sock = _bound_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                on_ready(url)

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    with sock:
        Server(config).run(sockets=[sock])


def _bound_socket(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r} is not an address this machine can bind ({exc.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port (0 picks a free one)") from None
    sock.listen(128)
    return sock
