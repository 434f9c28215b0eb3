"""Helpers shared by the test modules (imported as ``support``: pytest puts tests/ on the path)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from connexi_async import ConnexiClient
from connexi_async.sandbox import Sandbox
from connexi_async.sandbox._data import Dataset


def client_for(sandbox: Sandbox, **options: object) -> ConnexiClient:
    """A client of ``sandbox`` whose retries wait milliseconds."""
    defaults: dict[str, object] = {"backoff_base": 0.001, "backoff_max": 0.01}
    return ConnexiClient(**sandbox.credentials, **{**defaults, **options})  # type: ignore[arg-type]


def cli_env(sandbox: Sandbox | None) -> dict[str, str]:
    """This process's environment, with the sandbox's credentials in CONNEXI_* (or none)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CONNEXI_")}
    if sandbox is not None:
        creds = sandbox.credentials
        environment |= {
            "CONNEXI_API_KEY": creds["api_key"],
            "CONNEXI_API_SECRET": creds["api_secret"],
            "CONNEXI_BASE_URL": creds["base_url"],
        }
    return environment


def serve_inclusive_end(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every sandbox treat ``end`` as inclusive (boundary orders come twice) until
    the generator is resumed: ``undo = serve_inclusive_end(mp); next(undo) ... next(undo, None)``."""
    real_between = Dataset.between

    def inclusive(self: Dataset, start: datetime, end: datetime) -> Iterator[object]:
        yield from real_between(self, start, end + timedelta(seconds=1))

    monkeypatch.setattr(Dataset, "between", inclusive)
    yield
    monkeypatch.setattr(Dataset, "between", real_between)


class ForwardProxy:
    """A small forward proxy on loopback, as a corporate one behaves: ``CONNECT host:port``
    opens a tunnel (it sees only encrypted bytes after that); an absolute-form plain-http
    request is piped to its origin. ``refuse=407`` answers every request with that status;
    ``close=True`` hangs up at once. ``seen`` holds every byte a client sent it."""

    def __init__(self, *, refuse: int | None = None, close: bool = False) -> None:
        self.refuse = refuse
        self.close = close
        self.seen = bytearray()
        self.connects: list[str] = []
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        self.seen += head
        if self.close:
            writer.close()
            return
        if self.refuse is not None:
            writer.write(
                f'HTTP/1.1 {self.refuse} Refused\r\nProxy-Authenticate: Basic realm="x"\r\n'
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            writer.close()
            return
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method == "CONNECT":
            self.connects.append(target)
            host, port = target.rsplit(":", 1)
            first = b""
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            origin = target.split("//", 1)[1].split("/", 1)[0]
            host, port = origin.rsplit(":", 1)
            first = head
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        upstream_writer.write(first)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool
        ) -> None:
            try:
                while chunk := await source.read(65536):
                    if record:
                        self.seen += chunk
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                sink.close()

        tasks = [
            asyncio.create_task(pipe(reader, upstream_writer, True)),
            asyncio.create_task(pipe(upstream_reader, writer, False)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.difference_update(tasks)
