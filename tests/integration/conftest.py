"""Integration tests: the packages against real interfaces (a moto server, the SageMaker runtime
API over real HTTP, the toolkit's handler service, the SAM translator, training on a tiny set).

The one moto server of the session is here; every area deploys what it needs into it under its
own names (the launcher tests reset it before each test).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server on a free loopback port, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
