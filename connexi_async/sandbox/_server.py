"""Starting and stopping the sandbox: ``async with Sandbox() as sandbox``."""

from __future__ import annotations

import hashlib
import shutil
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict

import attrs
from aiohttp import web
from yarl import URL

from .._models import NewOrder, Order
from ._app import DEFAULT_CACHE_BYTES, SandboxState, build_app
from ._data import DataConfig, Dataset
from ._faults import Faults, Recorder
from ._partner import PageHook, PartnerState


class PartnerCredentials(TypedDict):
    """What ``PartnerClient(**sandbox.partner_credentials)`` needs."""

    partner_id: str
    partner_secret: str
    base_url: str


class Credentials(TypedDict):
    """What a client needs: ``ConnexiClient(**sandbox.credentials)``."""

    api_key: str
    api_secret: str
    base_url: str


DEFAULT_API_KEY = "sandbox-key"
DEFAULT_API_SECRET = "sandbox-secret"
DEFAULT_PARTNER_ID = "sandbox-partner"
DEFAULT_PARTNER_SECRET = "sandbox-partner-secret"
# Sandbox(accounts=N) serves at most this many accounts (each its own dataset).
MAX_ACCOUNTS = 100_000


class SandboxAccount:
    """One seller account of a multi-account sandbox (``Sandbox(accounts=N)``).

    ``key`` names it (``"account-0"``, ``"account-1"``, ...); ``credentials`` are its own
    (``ConnexiClient(**account.credentials)``); ``dataset`` is its own deterministic data;
    ``recorder`` counts only its requests, with ``max_in_flight`` the most it ever had
    in flight at once.
    """

    def __init__(self, sandbox: Sandbox, state: SandboxState) -> None:
        self._sandbox = sandbox
        self._state = state

    def __repr__(self) -> str:
        return f"<SandboxAccount {self.key} orders={len(self.dataset)}>"

    @property
    def key(self) -> str:
        return self._state.account

    @property
    def dataset(self) -> Dataset:
        return self._state.dataset

    @property
    def recorder(self) -> Recorder:
        return self._sandbox.state.account_recorders[self.key]

    @property
    def credentials(self) -> Credentials:
        return {
            "api_key": self._state.api_key,
            "api_secret": self._state.api_secret,
            "base_url": self._sandbox.base_url,
        }

    def order_ids(self, start: datetime, end: datetime) -> list[int]:
        """The ids this account holds with ``start <= created_at < end``."""
        return [o.id for o in self.dataset.between(start, end)]


class Sandbox:
    """An embedded Connexi v1 server on loopback, for tests, demos and benchmarks.

    >>> async def main():
    ...     async with Sandbox(orders=1_000, seed=7) as sandbox:
    ...         async with ConnexiClient(**sandbox.credentials) as client:
    ...             ...

    ``credentials`` holds ``api_key``, ``api_secret`` and ``base_url`` for the client.
    ``faults`` makes it misbehave (:class:`Faults`), ``recorder`` tells what it received,
    and ``latency_ms``, ``cap``, ``stall_seconds``, ``retry_after`` may be changed while
    it runs. ``cache_bytes`` (64 MiB) bounds the encoded window bodies kept for repeated
    reads.

    ``accounts=N`` serves N seller accounts (:attr:`accounts`), each with its own
    credentials, its own deterministic dataset (``orders`` each, seeded ``seed + i``) and
    its own recorder; account 0 is the one ``credentials``, ``dataset`` and the partner
    API speak for. ``recorder`` still counts every request.

    ``tls=True`` serves HTTPS with a throwaway CA and certificate made at start-up (for
    ``tls_hostnames``; needs ``trustme``, in the ``testing`` extra): connect with
    ``ConnexiClient(**sandbox.credentials, ssl=sandbox.client_ssl_context())``, or point
    ``ssl=`` at ``sandbox.ca_file``.
    """

    def __init__(
        self,
        *,
        orders: int = 10_000,
        seed: int = 7,
        start: datetime = datetime(2026, 10, 1, tzinfo=UTC),
        days: float = 30.0,
        burst_at: datetime | None = None,
        burst_orders: int = 0,
        cap: int | None = None,
        latency_ms: float = 0.0,
        stall_seconds: float = 10.0,
        retry_after: int = 0,
        redirect_to: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        partner_id: str = DEFAULT_PARTNER_ID,
        partner_secret: str = DEFAULT_PARTNER_SECRET,
        tls: bool = False,
        tls_hostnames: Sequence[str] = ("127.0.0.1", "localhost"),
        stock_update_delay: float = 0.5,
        accounts: int | None = None,
    ) -> None:
        if accounts is not None and (
            not isinstance(accounts, int)
            or isinstance(accounts, bool)
            or not 1 <= accounts <= MAX_ACCOUNTS
        ):
            raise ValueError(
                f"accounts must be a whole number from 1 to {MAX_ACCOUNTS:,}, got {accounts!r}"
            )
        config = DataConfig(
            seed=seed,
            orders=orders,
            start=start,
            days=days,
            burst_at=burst_at,
            burst_orders=burst_orders,
        )
        self.state: SandboxState = SandboxState(
            dataset=Dataset(config),
            api_key=api_key,
            api_secret=api_secret,
            partner=PartnerState(
                partner_id=partner_id,
                partner_secret=partner_secret,
                seed=seed,
                cache_bytes=cache_bytes,
                stock_update_delay=stock_update_delay,
            ),
            cap=cap,
            latency_ms=latency_ms,
            stall_seconds=stall_seconds,
            retry_after=retry_after,
            redirect_to=redirect_to,
            cache_bytes=cache_bytes,
        )
        self._accounts: list[SandboxAccount] = []
        if accounts is not None:
            self._add_accounts(accounts, config, api_key, api_secret)
        self._host = host
        self._port = port
        self.tls = tls
        self._tls_hostnames = tuple(tls_hostnames)
        self._ca: Any = None  # trustme.CA while running with tls
        self._ca_dir: Path | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: URL | None = None

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"<Sandbox {where} orders={len(self.dataset)}>"

    def _add_accounts(self, count: int, config: DataConfig, api_key: str, api_secret: str) -> None:
        main = self.state
        main.account = "account-0"
        for index in range(count):
            if index == 0:
                state = main
            else:
                # Credentials of their own, derived (stable across runs, so a worker in
                # another process can be given them), none a prefix of another's secret.
                digest = hashlib.sha256(f"{api_secret}:{index}".encode()).hexdigest()[:16]
                state = SandboxState(
                    dataset=Dataset(attrs.evolve(config, seed=config.seed + index)),
                    api_key=f"{api_key}-{index}",
                    api_secret=f"{api_secret}-{index}-{digest}",
                    partner=main.partner,
                    faults=main.faults,
                    cap=main.cap,
                    cache_bytes=max(main.cache_bytes // count, 1 << 20),
                    account=f"account-{index}",
                )
            main.tenants[state.api_key] = state
            main.account_recorders[state.account] = Recorder()
            self._accounts.append(SandboxAccount(self, state))

    # -- what tests reach ------------------------------------------------------------

    @property
    def accounts(self) -> list[SandboxAccount]:
        """The accounts of ``Sandbox(accounts=N)``, in order (empty without it)."""
        return list(self._accounts)

    def account(self, key: str) -> SandboxAccount:
        """The account named ``key`` (``"account-3"``); ``KeyError`` if there is none."""
        for account in self._accounts:
            if account.key == key:
                return account
        raise KeyError(key)

    @property
    def dataset(self) -> Dataset:
        return self.state.dataset

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def recorder(self) -> Recorder:
        return self.state.recorder

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the sandbox is not running: use `async with Sandbox() as sandbox`")
        return str(self._base_url)

    @property
    def port(self) -> int:
        port = URL(self.base_url).port
        assert port is not None
        return port

    @property
    def credentials(self) -> Credentials:
        """``api_key``, ``api_secret`` and ``base_url``: ``ConnexiClient(**sandbox.credentials)``."""
        return {
            "api_key": self.state.api_key,
            "api_secret": self.state.api_secret,
            "base_url": self.base_url,
        }

    @property
    def partner_credentials(self) -> PartnerCredentials:
        """``partner_id``, ``partner_secret`` and ``base_url``:
        ``PartnerClient(**sandbox.partner_credentials)``."""
        return {
            "partner_id": self.state.partner.partner_id,
            "partner_secret": self.state.partner.partner_secret,
            "base_url": self.base_url,
        }

    def between_pages(self, hook: PageHook | None) -> None:
        """Call ``hook(path, query)`` (a function or a coroutine function; ``query`` holds
        ``offset``, ``limit`` and the window's ``since``/``until``) after each partner page
        is made and before it is sent: a test changes the data there, so the next page of
        the same listing sees it (``None`` removes the hook)."""
        self.state.partner.page_hook = hook

    def remove_order(self, order_id: int) -> None:
        """Take an order out, as if deleted on the server (both APIs stop showing it)."""
        self.dataset.remove(order_id)
        self.state.invalidate()

    @property
    def partner_signature_form(self) -> str:
        """Which request-target form a partner signature may be computed over:
        ``"either"`` (default), ``"slash"`` or ``"no-slash"``."""
        return self.state.partner.signature_form

    @partner_signature_form.setter
    def partner_signature_form(self, value: str) -> None:
        if value not in ("either", "slash", "no-slash"):
            raise ValueError("partner_signature_form is 'either', 'slash' or 'no-slash'")
        self.state.partner.signature_form = value

    @property
    def cap(self) -> int | None:
        return self.state.cap

    @cap.setter
    def cap(self, value: int | None) -> None:
        for state in self.state.tenants.values() or [self.state]:
            state.cap = value
            state.invalidate()

    @property
    def latency_ms(self) -> float:
        return self.state.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self.state.latency_ms = value

    @property
    def stock_update_delay(self) -> float:
        """Seconds a partner stock update job runs before it finishes (0.5 s)."""
        return self.state.partner.stock_update_delay

    @stock_update_delay.setter
    def stock_update_delay(self, value: float) -> None:
        self.state.partner.stock_update_delay = value

    def add_orders(self, orders: Iterable[NewOrder], *, created_at: datetime) -> list[Order]:
        """Create orders as if the server had received them at ``created_at``: a late
        arrival when that is in the past (an order synced late from a marketplace)."""
        if created_at.tzinfo is None:
            raise ValueError("created_at must be an aware datetime")
        created = [self.dataset.create(new, created_at.astimezone(UTC)) for new in orders]
        self.state.invalidate()
        return created

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this sandbox's throwaway CA (tls=True)."""
        if self._ca is None:
            raise RuntimeError("the sandbox serves TLS only with Sandbox(tls=True), once started")
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    @property
    def ca_file(self) -> str:
        """The throwaway CA's certificate as a PEM file (tls=True), for ``ssl=`` or
        ``SSL_CERT_FILE``."""
        if self._ca_dir is None:
            raise RuntimeError("the sandbox serves TLS only with Sandbox(tls=True), once started")
        return str(self._ca_dir / "sandbox-ca.pem")

    def _server_ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        try:
            import trustme
        except ImportError:
            raise RuntimeError(
                "Sandbox(tls=True) makes its certificates with trustme: "
                "pip install 'connexi-async[testing]'"
            ) from None
        self._ca = trustme.CA()
        certificate = self._ca.issue_cert(*self._tls_hostnames)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        self._ca_dir = Path(tempfile.mkdtemp(prefix="connexi-sandbox-"))
        self._ca.cert_pem.write_to_path(self.ca_file)
        return context

    def order_ids(self, start: datetime, end: datetime) -> list[int]:
        """The ids the sandbox holds with ``start <= created_at < end``, in its order."""
        return [o.id for o in self.dataset.between(start, end)]

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        app = build_app(self.state)
        # handler_cancellation: a stalled handler ends when its client hangs up.
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, ssl_context=self._server_ssl_context())
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._base_url = URL.build(scheme="https" if self.tls else "http", host=host, port=port)

    async def stop(self) -> None:
        for state in {id(s): s for s in [self.state, *self.state.tenants.values()]}.values():
            await state.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._ca_dir is not None:
            shutil.rmtree(self._ca_dir, ignore_errors=True)
            self._ca_dir = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
