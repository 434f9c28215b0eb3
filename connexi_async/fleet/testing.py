"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` plus ``pg_ctl``.

>>> with TemporaryCluster() as cluster:
...     fleet = Fleet(cluster.conninfo, ...)

The server binaries (``initdb``, ``pg_ctl``, ``postgres``) are looked up on ``PATH``,
then in ``/usr/lib/postgresql/*/bin``; ``CONNEXI_PG_BIN`` names their folder. Missing
binaries are a :class:`ClusterError` that says what to install, never a silent skip.
PostgreSQL refuses to run as root: as root, the cluster runs as the ``postgres`` system
user (``CONNEXI_PG_USER`` names another).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["ClusterError", "TemporaryCluster"]

_BINARIES = ("initdb", "pg_ctl", "postgres")


class ClusterError(RuntimeError):
    """The throwaway cluster could not be made or started; the message says why."""


def find_binaries() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    configured = os.environ.get("CONNEXI_PG_BIN")
    candidates = [Path(configured)] if configured else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if all((folder / name).is_file() for name in _BINARIES):
            return folder
    raise ClusterError(
        "the PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH "
        "or in /usr/lib/postgresql/*/bin: install the server (Debian: apt install "
        "postgresql) or set CONNEXI_PG_BIN to their folder"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class TemporaryCluster:
    """A PostgreSQL cluster in a temporary folder, on loopback, trust authentication,
    stopped and deleted on exit. ``conninfo`` connects to its ``database`` (``connexi``).
    Tuned for tests (``fsync=off``): never for data you keep."""

    def __init__(self, *, database: str = "connexi") -> None:
        self.database = database
        self.port: int = 0
        self._dir: Path | None = None
        self._bin: Path | None = None
        self._run_as: list[str] = []
        self._log: Path | None = None
        self._options = ""

    @property
    def conninfo(self) -> str:
        if not self.port:
            raise ClusterError("the cluster is not running: use `with TemporaryCluster()`")
        return f"host=127.0.0.1 port={self.port} dbname={self.database} user=postgres"

    def _command(self, *args: str) -> list[str]:
        return [*self._run_as, *args]

    def start(self) -> None:
        self._bin = find_binaries()
        base = Path(tempfile.mkdtemp(prefix="connexi-pg-"))
        self._dir = base
        data = base / "data"
        self._log = base / "server.log"
        if os.geteuid() == 0:
            user = os.environ.get("CONNEXI_PG_USER", "postgres")
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise ClusterError(
                    f"PostgreSQL will not run as root, and there is no {user!r} system user "
                    "to run it as: create one (useradd postgres) or set CONNEXI_PG_USER"
                ) from None
            os.chown(base, entry.pw_uid, entry.pw_gid)
            runuser = shutil.which("runuser")
            if runuser is None:
                raise ClusterError("running as root needs runuser (util-linux) to start PostgreSQL")
            self._run_as = [runuser, "-u", user, "--"]
        self._run(
            str(self._bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        for attempt in range(5):
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={base} -c fsync=off -c max_connections=300 "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run(
                    str(self._bin / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(self._log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                break
            except ClusterError:
                if attempt == 4:
                    raise
        self._options = options
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres",
                    autocommit=True,
                    connect_timeout=5,
                ) as db:
                    db.execute(f'CREATE DATABASE "{self.database}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def restart(self) -> None:
        """Stop the server (fast: every connection is cut) and start it again on the
        same port, as a database restart or failover looks to its clients."""
        if self._dir is None or self._bin is None:
            raise ClusterError("the cluster is not running")
        self._run(
            str(self._bin / "pg_ctl"), "-D", str(self._dir / "data"), "-l", str(self._log),
            "-o", self._options, "-m", "fast", "-w", "-t", "60", "restart",
        )  # fmt: skip

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            self._command(*args), capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode:
            log = ""
            if self._log is not None and self._log.exists():
                with contextlib.suppress(OSError):
                    log = self._log.read_text(errors="replace")[-2000:]
            raise ClusterError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}\n{log}".strip()
            )

    def stop(self) -> None:
        if self._dir is None:
            return
        base, self._dir = self._dir, None
        try:
            if self.port and self._bin is not None:
                subprocess.run(
                    self._command(
                        str(self._bin / "pg_ctl"),
                        "-D",
                        str(base / "data"),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ),
                    capture_output=True,
                    check=False,
                    timeout=60,
                )
        finally:
            self.port = 0
            shutil.rmtree(base, ignore_errors=True)

    def __enter__(self) -> TemporaryCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
