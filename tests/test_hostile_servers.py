"""Hostile servers (a raw-socket one of our own, not aiohttp's), hostile arguments and
secrets: every failure typed, bounded in time and memory, and nothing leaks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import re
import time
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest

from connexi_async import (
    ConfigurationError,
    ConnexiClient,
    ConnexiError,
    DecodeError,
    EncodeError,
    NewOrder,
    OutcomeUnknownError,
    RateLimitError,
    ResponseTooLargeError,
    StatusUpdate,
    TransportError,
    WindowError,
)
from connexi_async.sandbox import FaultKind, Sandbox

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
OCT2 = OCT1 + timedelta(days=1)
SECRET = "SUPERSECRET123"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A socket server that reads each request head (and body) and lets ``handler`` write
    whatever bytes it likes: (base URL, the request heads received)."""
    heads: list[bytes] = []
    serving: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            serving.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                await handler(reader, writer, head)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", heads
    finally:
        server.close()
        # Python 3.11's wait_closed() does not wait for the connections' handlers: one
        # still reading a connection the client kept open would be destroyed pending
        # with the loop (seen with aiohttp 3.11.0, which closes its pool lazily).
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)
        await server.wait_closed()


def client_for(base_url: str, **options: Any) -> ConnexiClient:
    defaults = {"backoff_base": 0.001, "backoff_max": 0.01, "max_attempts": 3}
    return ConnexiClient(
        api_key="key", api_secret=SECRET, base_url=base_url, **{**defaults, **options}
    )


def response(status: str, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- 2: response size is bounded, decompressed bytes counted -----------------------------


async def test_a_gzip_bomb_is_refused_at_the_limit_and_not_retried() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"0" * (1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush()  # 256 MiB
    assert len(bomb) < 2 << 20

    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(response("200 OK", bomb, "Content-Encoding: gzip"))
        await writer.drain()

    async with (
        raw_server(handler) as (url, heads),
        client_for(url, max_response_bytes=8 << 20) as client,
    ):
        started = time.monotonic()
        with pytest.raises(ResponseTooLargeError) as info:
            await client.fetch_orders(OCT1, OCT2)
        assert time.monotonic() - started < 30
    message = str(info.value)
    assert "max_response_bytes=8,388,608" in message
    assert "window" in message  # what to do about it
    assert len(heads) == 1  # the same window would fail again: not retried


@pytest.mark.parametrize("declared", [True, False])
async def test_an_oversized_body_is_refused(declared: bool) -> None:
    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        if declared:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"7" * (1 << 20)
        for _ in range(64):
            if declared:
                writer.write(chunk)
            else:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()

    async with (
        raw_server(handler) as (url, _),
        client_for(url, max_response_bytes=4 << 20) as client,
    ):
        with pytest.raises(ResponseTooLargeError):
            await client.fetch_orders(OCT1, OCT2)
        assert isinstance(ResponseTooLargeError("x"), TransportError)


async def test_an_oversized_answer_to_a_post_is_an_unknown_outcome() -> None:
    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(response("200 OK", b"[" + b" " * (2 << 20) + b"]"))
        await writer.drain()

    async with (
        raw_server(handler) as (url, heads),
        client_for(url, max_response_bytes=1 << 20) as client,
    ):
        with pytest.raises(OutcomeUnknownError, match="max_response_bytes"):
            await client.create_orders([NewOrder(remote_order_id="1", marketplace_code="bklp")])
    assert len(heads) == 1


# -- 1, 3: a huge exponent is a quick, typed failure, never a freeze ----------------------


async def test_a_huge_exponent_is_quick_on_every_call() -> None:
    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(
            response("200 OK", b'{"orders":[{"id":1e999999,"total":1e9999999999999999999}]}')
        )
        await writer.drain()

    async with raw_server(handler) as (url, _), client_for(url, timeout=5) as client:
        started = time.monotonic()
        with pytest.raises(DecodeError, match=r"\$\.orders\[0\]\.id"):
            await client.fetch_orders(OCT1, OCT2)
        with pytest.raises(WindowError):
            async for _ in client.orders(OCT1, OCT2):
                pass
        # The server accepted the writes: an unreadable echo is logged, never raised.
        assert await client.create_orders([NewOrder(remote_order_id="1")]) == []
        assert await client.update_order_statuses([(1, "accepted")]) == []
        assert time.monotonic() - started < 5


# -- 4: hostile Retry-After values -------------------------------------------------------


@pytest.mark.parametrize("value", ["9" * 400, "9" * 5000])
async def test_an_enormous_retry_after_is_a_rate_limit_error(value: str) -> None:
    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(response("429 Too Many Requests", b"{}", f"Retry-After: {value}"))
        await writer.drain()

    async with raw_server(handler) as (url, _), client_for(url) as client:
        for call in (
            lambda: client.fetch_orders(OCT1, OCT2),
            lambda: client.create_orders([NewOrder(remote_order_id="1")]),
        ):
            with pytest.raises(RateLimitError) as info:
                await call()
            assert info.value.retry_after == 1e12


@pytest.mark.parametrize("value", ["²", "٣", "soon", "Wed, 99 Foo 2026", "-1", ""])
async def test_an_unreadable_retry_after_falls_back_to_backoff(value: str) -> None:
    answers = iter([response("429 Too Many Requests", b"{}", f"Retry-After: {value}")])

    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(next(answers, response("200 OK", b'{"orders":[{"id":5}]}')))
        await writer.drain()

    async with raw_server(handler) as (url, heads), client_for(url) as client:
        assert [o.id for o in await client.fetch_orders(OCT1, OCT2)] == [5]
    assert len(heads) == 2


# -- 5, 11, 12, 13: bad arguments are typed errors before any request --------------------


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": float("nan")},
        {"read_timeout": float("nan")},
        {"connect_timeout": -1},
        {"backoff_base": float("nan")},
        {"max_retry_after": float("nan")},
        {"requests_per_second": float("nan")},
        {"requests_per_second": float("inf")},
        {"timeout": "5"},
        {"base_url": 5},
        {"base_url": "http://[::1"},
        {"max_attempts": 2.5},
        {"max_attempts": True},
        {"max_connections": "8"},
        {"max_connections": 0},
        {"max_response_bytes": 0},
        {"max_batch": 0},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ConnexiClient(api_key="k", api_secret="s", **options)


def test_infinite_timeouts_mean_no_limit() -> None:
    ConnexiClient(api_key="k", api_secret="s", timeout=float("inf"), read_timeout=float("inf"))


async def test_bad_arguments_send_nothing(
    connexi_sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    plus_one = timezone(timedelta(hours=1))
    async with ConnexiClient(**connexi_sandbox.credentials, max_batch=2) as client:
        with pytest.raises(ConfigurationError):
            client.orders(datetime(1, 1, 1, 0, 30, tzinfo=plus_one), OCT2)
        with pytest.raises(ConfigurationError):
            client.orders(OCT1, datetime.max.replace(tzinfo=UTC), window=timedelta(seconds=1))
        with pytest.raises(ConfigurationError):
            client.orders(OCT1, OCT2, page_cap="x")  # type: ignore[arg-type]
        for start, end in ((OCT2, OCT1), (OCT1, OCT1)):
            with pytest.raises(ConfigurationError, match="must be before end"):
                await client.fetch_orders(start, end)
            with pytest.raises(ConfigurationError, match="must be before end"):
                await client.fetch_locations(start, end)
        with pytest.raises(EncodeError):
            await client.create_orders(None)  # type: ignore[arg-type]
        with pytest.raises(EncodeError, match=r"orders\[0\]: expected NewOrder, got dict"):
            await client.create_orders([{"remote_order_id": "1"}])  # type: ignore[list-item]
        with pytest.raises(EncodeError, match=r"updates\[0\]"):
            await client.update_order_statuses([(1,)])  # type: ignore[list-item]
        with pytest.raises(EncodeError, match="non-empty"):
            await client.update_order_statuses([(1, "")])
        with pytest.raises(EncodeError, match="line_items"):
            await client.create_orders([NewOrder(line_items=None)])  # type: ignore[arg-type]
        with pytest.raises(EncodeError, match="store_id"):
            await client.create_orders([NewOrder(store_id=10**5000)])
        with pytest.raises(EncodeError, match="max_batch=2"):
            await client.create_orders([NewOrder(remote_order_id=str(i)) for i in range(3)])
        assert await client.create_orders([]) == []
        assert await client.update_order_statuses([]) == []
        assert sum(connexi_sandbox.recorder.requests.values()) == 0
        # Several PATCHes past max_batch; an undocumented status is sent and logged.
        caplog.set_level(logging.WARNING, logger="connexi_async")
        orders = list(connexi_sandbox.dataset.between(OCT1, OCT1 + timedelta(days=30)))[:5]
        same = [(o.id, o.order_status or "pending") for o in orders[:4]]  # no-ops succeed
        with pytest.raises(ConnexiError):
            await client.update_order_statuses([*same, (orders[4].id, "flying")])
        assert connexi_sandbox.recorder.requests["PATCH /v1/order"] == 3
        assert any(
            "'flying' is not a status the API documents" in r.getMessage() for r in caplog.records
        )


# -- 15: a POST cancelled by its caller is logged, and stays a cancellation --------------


async def test_a_cancelled_post_is_logged_with_its_order_count(
    connexi_sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="connexi_async")
    connexi_sandbox.latency_ms = 2_000
    async with ConnexiClient(**connexi_sandbox.credentials) as client:
        orders = [NewOrder(remote_order_id=f"C{i}", marketplace_code="bklp") for i in range(3)]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.create_orders(orders)
    assert any("cancelled while its POST of 3 orders" in r.getMessage() for r in caplog.records), (
        caplog.text
    )


# -- 7: secrets are out of every reachable part of every error ---------------------------


def assert_secret_unreachable(error: BaseException) -> None:
    """Looks through an error's whole graph: causes, contexts, args, attributes, every
    traceback frame's locals (what pytest -l, Sentry and rich show), and its pickle."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        exc = todo.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        assert not isinstance(exc, aiohttp.ClientError), f"aiohttp's {exc!r} is reachable"
        texts = [str(exc), repr(exc), repr(exc.args), repr(vars(exc)), repr(pickle.dumps(exc))]
        summary = traceback.TracebackException(
            type(exc), exc, exc.__traceback__, capture_locals=True, lookup_lines=False
        )
        texts += [repr(frame.locals) for frame in summary.stack]
        for text in texts:
            assert SECRET not in text, (type(error), text[:300])
        todo += [e for e in (exc.__cause__, exc.__context__) if e is not None]


async def test_no_error_kind_leads_to_the_secret() -> None:
    kinds = iter(
        [
            FaultKind.DISCONNECT,
            FaultKind.TRUNCATE,
            FaultKind.STALL_HEADERS,
            FaultKind.UNAVAILABLE,
            FaultKind.MALFORMED,
            FaultKind.REDIRECT,
            FaultKind.RATE_LIMIT,
        ]
    )
    errors: list[BaseException] = []
    async with Sandbox(
        orders=200, api_secret=SECRET, stall_seconds=1.0, retry_after=999
    ) as sandbox:
        options = {
            "backoff_base": 0.001,
            "backoff_max": 0.01,
            "read_timeout": 0.2,
            "max_attempts": 2,
        }
        async with ConnexiClient(**sandbox.credentials, **options) as client:  # type: ignore[arg-type]
            for fault in kinds:
                sandbox.faults.script("GET /v1/order", fault, fault)
                try:
                    await client.fetch_orders(OCT1, OCT2)
                except ConnexiError as exc:
                    errors.append(exc)
            sandbox.faults.script("GET /v1/order", FaultKind.UNAVAILABLE, FaultKind.UNAVAILABLE)
            try:
                async for _ in client.orders(OCT1, OCT2):
                    pass
            except WindowError as exc:
                errors.append(exc)
            sandbox.faults.script("POST /v1/order", FaultKind.DISCONNECT)
            try:
                await client.create_orders([NewOrder(remote_order_id="9", marketplace_code="bklp")])
            except OutcomeUnknownError as exc:
                errors.append(exc)
            try:
                await client.update_order_statuses([StatusUpdate(id=1, status="completed")])
            except ConnexiError as exc:
                errors.append(exc)
        async with ConnexiClient(**{**sandbox.credentials, "api_secret": "WRONG" + SECRET}) as bad:
            try:
                await bad.fetch_orders(OCT1, OCT2)
            except ConnexiError as exc:
                errors.append(exc)
        async with ConnexiClient(**sandbox.credentials, timeout=0.3) as slow:
            sandbox.latency_ms = 2_000
            try:
                await slow.fetch_orders(OCT1, OCT2)
            except ConnexiError as exc:
                errors.append(exc)
    assert len(errors) >= 10
    kinds_seen = {type(e).__name__ for e in errors}
    assert {"TransportError", "ServerError", "DecodeError", "WindowError"} <= kinds_seen, kinds_seen
    for error in errors:
        assert_secret_unreachable(error)


# -- found by an adversarial review: error bodies are hostile too -------------------------


@pytest.mark.parametrize("status", ["400 Bad Request", "429 Too Many Requests", "500 Oops"])
async def test_a_deeply_nested_error_body_is_still_a_typed_error(status: str) -> None:
    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(response(status, b"[" * 1500))
        await writer.drain()

    async with raw_server(handler) as (url, _), client_for(url, max_attempts=2) as client:
        with pytest.raises(ConnexiError):
            await client.fetch_orders(OCT1, OCT2)
        with pytest.raises(ConnexiError):
            async for _ in client.orders(OCT1, OCT2):
                pass


async def test_server_text_in_errors_is_printable() -> None:
    body = b'{"message": "\\u0000\\u001b[31mred \\ud800", "reference": "r\\n1"}'

    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(response("400 Bad Request", body))
        await writer.drain()

    async with raw_server(handler) as (url, _), client_for(url) as client:
        with pytest.raises(ConnexiError) as info:
            await client.fetch_orders(OCT1, OCT2)
    text = str(info.value)
    text.encode("utf-8")  # printable and loggable: no lone surrogate
    assert "\x1b" not in text
    assert "\x00" not in text
    assert "\\x1b[31mred" in text
