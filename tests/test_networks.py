"""TLS, CA bundles and proxies, end to end on loopback: real handshakes, a real proxy."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import trustme
from support import ForwardProxy

from connexi_async import (
    ConfigurationError,
    ConnexiClient,
    NewOrder,
    ProxyError,
    RedirectError,
    StatusUpdate,
    TLSError,
)
from connexi_async.sandbox import FaultKind, Sandbox

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
FAST = {"backoff_base": 0.001, "backoff_max": 0.01}


async def one_of_each(client: ConnexiClient, method: str) -> object:
    if method == "GET":
        return await client.fetch_orders(OCT1, OCT1 + timedelta(days=1))
    if method == "PATCH":
        return await client.update_order_statuses([StatusUpdate(id=1, status="accepted")])
    return await client.create_orders([NewOrder(remote_order_id="r-1", marketplace_code="bklp")])


async def test_https_with_the_sandbox_ca(tmp_path: Path) -> None:
    async with Sandbox(orders=200, days=2, tls=True) as sandbox:
        assert sandbox.base_url.startswith("https://")
        for option in (sandbox.client_ssl_context(), sandbox.ca_file, Path(sandbox.ca_file)):
            async with ConnexiClient(**sandbox.credentials, ssl=option) as client:
                orders = [o async for o in client.orders(OCT1, OCT1 + timedelta(days=2))]
            assert [o.id for o in orders] == sandbox.order_ids(OCT1, OCT1 + timedelta(days=2))


async def test_the_plugin_has_https_fixtures(
    connexi_tls_sandbox: Sandbox, connexi_tls_client: ConnexiClient
) -> None:
    assert connexi_tls_sandbox.tls
    assert await connexi_tls_client.fetch_orders(OCT1, OCT1 + timedelta(days=1))


class _Counting(asyncio.Protocol):
    accepted = 0

    def __init__(self) -> None:
        type(self).accepted += 1  # called per TCP connection, before the handshake


@asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[tuple[str, type[_Counting]]]:
    counter = type("Counter", (_Counting,), {"accepted": 0})
    loop = asyncio.get_running_loop()
    server = await loop.create_server(counter, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}", counter
    finally:
        server.close()


def server_context(ca: trustme.CA, *names: str, **dates: datetime) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names, **dates).configure_cert(context)  # type: ignore[arg-type]
    return context


CASES = {
    "unknown authority": ({"names": ("127.0.0.1",)}, False, "pass ssl="),
    "another host name": ({"names": ("api.example.test",)}, True, "not valid for that name"),
    "expired": (
        {"names": ("127.0.0.1",), "not_after": datetime(2020, 1, 1, tzinfo=UTC)},
        True,
        "expired",
    ),
}


@pytest.mark.parametrize("method", ["GET", "PATCH", "POST"])
@pytest.mark.parametrize("case", list(CASES))
async def test_a_certificate_that_does_not_verify_is_one_attempt_and_a_tls_error(
    case: str, method: str
) -> None:
    spec, trusted, hint = CASES[case]
    ca = trustme.CA()
    names = spec["names"]
    dates = {k: v for k, v in spec.items() if k != "names"}
    async with tls_server(server_context(ca, *names, **dates)) as (url, counter):
        client_context = ssl.create_default_context()
        if trusted:
            ca.configure_trust(client_context)
        options = {"ssl": client_context} if trusted else {}
        async with ConnexiClient(
            api_key="k", api_secret="s3cret", base_url=url, max_attempts=5, **FAST, **options
        ) as client:
            with pytest.raises(TLSError) as info:
                await one_of_each(client, method)
    assert counter.accepted == 1  # never retried, whatever the method
    error = info.value
    assert error.host == "127.0.0.1"
    assert hint in str(error)
    assert "127.0.0.1" in str(error)
    assert "s3cret" not in repr(error.__dict__) + str(error)


async def test_bad_tls_options_are_configuration_errors(tmp_path: Path) -> None:
    base = {"api_key": "k", "api_secret": "s", "base_url": "https://api.example.test"}
    with pytest.raises(ConfigurationError, match="cannot be turned off"):
        ConnexiClient(**base, ssl=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="CA bundle"):
        ConnexiClient(**base, ssl=str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="CA bundle"):
        ConnexiClient(**base, ssl=str(tmp_path / "junk.pem"))
    with pytest.raises(ConfigurationError, match="proxy"):
        ConnexiClient(**base, proxy="socks5://proxy:1080")
    async with aiohttp.ClientSession() as session:
        for option in (
            {"ssl": ssl.create_default_context()},
            {"proxy": "http://p:1"},
            {"trust_env": True},
        ):
            with pytest.raises(ConfigurationError, match="session="):
                ConnexiClient(**base, session=session, **option)  # type: ignore[arg-type]


async def test_redirects_are_refused_over_tls() -> None:
    async with Sandbox(orders=50, days=1, tls=True) as sandbox:
        for target in ("http://127.0.0.1:9", "https://elsewhere.example.test"):
            sandbox.state.redirect_to = target
            sandbox.faults.script("GET /v1/order", FaultKind.REDIRECT)
            async with ConnexiClient(**sandbox.credentials, ssl=sandbox.ca_file, **FAST) as client:
                with pytest.raises(RedirectError) as info:
                    await client.fetch_orders(OCT1, OCT1 + timedelta(days=1))
            assert info.value.location is not None
            assert info.value.location.startswith(target)
            assert sandbox.recorder.count("GET /v1/order") >= 1


# -- proxies -------------------------------------------------------------------------------


async def test_through_a_proxy_it_sees_only_the_tunnel() -> None:
    async with Sandbox(orders=300, days=2, tls=True) as sandbox, ForwardProxy() as proxy:
        async with ConnexiClient(
            **sandbox.credentials, ssl=sandbox.ca_file, proxy=proxy.url
        ) as client:
            orders = [o async for o in client.orders(OCT1, OCT1 + timedelta(days=2))]
            first = orders[0]
            await client.update_order_statuses(
                [StatusUpdate(id=first.id, status=first.order_status)]
            )
        ids = [o.id for o in orders]
        assert ids == sandbox.order_ids(OCT1, OCT1 + timedelta(days=2))
        assert proxy.connects
        assert all(c == f"127.0.0.1:{sandbox.port}" for c in proxy.connects)
        secret = sandbox.credentials["api_secret"].encode()
        assert secret not in proxy.seen
        assert b"/v1/order" not in proxy.seen  # not even the path
        assert b"api_secret" not in proxy.seen


async def test_proxy_credentials_are_sent_to_the_proxy_and_shown_nowhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Sandbox(orders=10, days=1, tls=True) as sandbox, ForwardProxy(refuse=407) as proxy:
        url = proxy.url.replace("http://", "http://alice:pa55word@")
        client = ConnexiClient(**sandbox.credentials, ssl=sandbox.ca_file, proxy=url, **FAST)
        async with client:
            for method in ("GET", "POST"):
                with pytest.raises(ProxyError, match="407") as info:
                    await one_of_each(client, method)
                assert "pa55word" not in str(info.value)
                assert "alice" not in str(info.value)
        assert b"Proxy-Authorization: Basic YWxpY2U6cGE1NXdvcmQ=" in proxy.seen
        assert proxy.requests == 2  # a refusal is not retried
        assert "pa55word" not in repr(client) + repr(client._transport.__dict__)
    assert "pa55word" not in caplog.text


async def test_a_proxy_that_hangs_up_is_a_typed_error() -> None:
    async with (
        Sandbox(orders=10, days=1, tls=True) as sandbox,
        ForwardProxy(close=True) as proxy,
        ConnexiClient(
            **sandbox.credentials, ssl=sandbox.ca_file, proxy=proxy.url, max_attempts=2, **FAST
        ) as client,
    ):
        with pytest.raises(ProxyError, match="proxy"):
            await client.fetch_orders(OCT1, OCT1 + timedelta(days=1))
        assert proxy.requests == 2  # a hang-up may be passing: retried


async def test_trust_env_follows_https_proxy_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Sandbox(orders=50, days=1, tls=True) as sandbox, ForwardProxy() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("https_proxy", proxy.url)
        async with ConnexiClient(**sandbox.credentials, ssl=sandbox.ca_file) as client:
            await client.fetch_orders(OCT1, OCT1 + timedelta(days=1))
        assert proxy.requests == 0  # trust_env is off by default
        async with ConnexiClient(
            **sandbox.credentials, ssl=sandbox.ca_file, trust_env=True
        ) as client:
            await client.fetch_orders(OCT1, OCT1 + timedelta(days=1))
        assert proxy.connects == [f"127.0.0.1:{sandbox.port}"]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        async with ConnexiClient(
            **sandbox.credentials, ssl=sandbox.ca_file, trust_env=True
        ) as client:
            await client.fetch_orders(OCT1, OCT1 + timedelta(days=1))
        assert len(proxy.connects) == 1  # NO_PROXY: straight to the server


async def test_the_command_line_over_tls_with_a_ca_file(tmp_path: Path) -> None:
    import sys

    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connexi_async.sandbox", "--tls", "--port", "0", "--orders", "500",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        env: dict[str, str] = {}
        while "CONNEXI_CA_FILE" not in env:
            line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode().strip()
            assert line, "the sandbox ended without printing its CA file"
            if "=" in line:
                key, value = line.split("=", 1)
                env[key] = value
        assert env["CONNEXI_BASE_URL"].startswith("https://")
        from support import cli_env

        base = {k: v for k, v in cli_env(None).items()} | {
            k: v for k, v in env.items() if k != "CONNEXI_CA_FILE"
        }
        args = ["orders", "--since", "2026-10-01", "--until", "2026-10-02"]
        for extra, code in (([], 5), (["--ca-file", env["CONNEXI_CA_FILE"]], 0)):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "connexi_async", *args, *extra,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=base,
            )  # fmt: skip
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == code, err
            if code:
                assert b"--ca-file" in err
                assert b"TLS" in err
            else:
                assert out.count(b"\n") > 0
    finally:
        server.terminate()
        await server.wait()


# -- regressions found by review ---------------------------------------------------------


async def test_a_refusing_proxy_from_the_environment_is_a_proxy_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: with the proxy from HTTPS_PROXY (trust_env), a 407 was a plain
    TransportError for a GET and an OutcomeUnknownError for a POST that never left."""
    async with Sandbox(orders=10, days=1, tls=True) as sandbox, ForwardProxy(refuse=407) as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("https_proxy", proxy.url)
        async with ConnexiClient(
            **sandbox.credentials, ssl=sandbox.ca_file, trust_env=True, **FAST
        ) as client:
            for method in ("GET", "POST"):
                with pytest.raises(ProxyError, match="407"):
                    await one_of_each(client, method)
        assert sandbox.recorder.count("POST /v1/order") == 0


def test_secrets_stay_out_of_configuration_errors_and_their_frames() -> None:
    """Regression: a proxy given as bytes was echoed with its password; a half-built
    client's repr raised; __init__ frames held the secret in clear."""
    import traceback

    with pytest.raises(ConfigurationError) as info:
        ConnexiClient(api_key="k", api_secret="s3cr3t-v4lue", proxy=b"http://u:PW0rd@h:1")  # type: ignore[arg-type]
    assert "PW0rd" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        ConnexiClient(api_key="k", api_secret="s3cr3t-v4lue", proxy="socks5://u:PW0rd@h:1")
    with pytest.raises(ConfigurationError) as timeout_info:
        ConnexiClient(api_key="k", api_secret="s3cr3t-v4lue", timeout=-1)
    for error in (info.value, timeout_info.value):
        # Our frames only (the test's own line holds the literals, of course).
        ours = [
            frame
            for frame, _ in traceback.walk_tb(error.__traceback__)
            if "connexi_async" in frame.f_code.co_filename
        ]
        assert ours
        shown = "".join(repr(value) for frame in ours for value in frame.f_locals.values())
        assert "s3cr3t-v4lue" not in shown
        assert "PW0rd" not in shown
    half = ConnexiClient.__new__(ConnexiClient)
    assert "ConnexiClient" in repr(half)
