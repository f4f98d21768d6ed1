"""Run an ASGI app with uvicorn in a background thread on 127.0.0.1 (an ephemeral port).

Shared by the local protocol servers the tests talk to (LLM providers, alert webhooks).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def start_in_thread(app: Any, name: str) -> tuple[uvicorn.Server, threading.Thread, int]:
    """Start `app` and return once it accepts connections: (server, thread, port)."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and accepted sockets inherit it. With proto 0 every keep-alive request waited ~44 ms on
    # Nagle + delayed ACK (measured: 44 ms -> 0.5 ms per request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        http="h11",
        loop="asyncio",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"{name}-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{name} failed to start")
        time.sleep(0.002)
    return server, thread, port
