"""The command line through a subprocess against a sandbox: formats, exit codes, Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support import cli_env

import connexi_async
from connexi_async import decode_locations, decode_orders
from connexi_async.cli import parse_duration, parse_time
from connexi_async.sandbox import FaultKind, Sandbox

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)


async def run_cli(
    *args: str,
    sandbox: Sandbox | None = None,
    env: dict[str, str] | None = None,
    limit: float = 60,
) -> tuple[int, str, str]:
    environment = cli_env(sandbox) | (env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connexi_async", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), limit)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_orders_jsonl_parses_back_to_the_same_orders(connexi_sandbox: Sandbox) -> None:
    code, out, err = await run_cli(
        "orders", "--since", "2026-10-01", "--until", "2026-10-04", "--window", "6h",
        sandbox=connexi_sandbox,
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    parsed = [decode_orders(f"[{line}]")[0] for line in lines]
    assert parsed == list(connexi_sandbox.dataset.between(OCT1, OCT1 + timedelta(days=3)))
    assert "orders in" in err
    assert "retries" in err
    assert "duplicates dropped" in err


async def test_orders_csv(connexi_sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "orders.csv"
    code, out, err = await run_cli(
        "orders", "--since", "2026-10-01T00:00:00Z", "--until", "2026-10-03T00:00:00Z",
        "--format", "csv", "-o", str(target), "--unordered", "--concurrency", "3",
        sandbox=connexi_sandbox,
    )  # fmt: skip
    assert code == 0, err
    assert out == ""  # nothing but data on stdout, and the data went to the file
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    expected = {o.id: o for o in connexi_sandbox.dataset.between(OCT1, OCT1 + timedelta(days=2))}
    assert sorted(int(r["id"]) for r in rows) == sorted(expected)
    for row in rows:
        order = expected[int(row["id"])]
        assert Decimal(row["total"]) == order.total
        assert row["delivery_city"] == order.delivery_city
        assert int(row["line_item_count"]) == len(order.line_items)
        assert Decimal(row["line_items_total"]) == sum(li.total for li in order.line_items)
        assert row["created_at"] == order.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(
            ".000000Z", "Z"
        )  # type: ignore[union-attr]


async def test_stocks_jsonl_and_csv(connexi_sandbox: Sandbox) -> None:
    code, out, _ = await run_cli("stocks", sandbox=connexi_sandbox)
    assert code == 0
    (tree,) = decode_locations(f"[{out.strip()}]")
    code, out, _ = await run_cli("stocks", "--format", "csv", sandbox=connexi_sandbox)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == sum(1 for _ in tree.walk())
    district = next(r for r in rows if r["location_code"] == "ID-JK0101")
    assert district["level"] == "district"
    assert district["path"] == "INDONESIA / DKI JAKARTA / JAKARTA PUSAT / JAKARTA PUSAT-GAMBIR"


async def test_update_status_and_create(connexi_sandbox: Sandbox, tmp_path: Path) -> None:
    pending = [
        o.id
        for o in connexi_sandbox.dataset.between(OCT1, OCT1 + timedelta(days=30))
        if o.order_status == "pending"
    ]
    code, out, err = await run_cli(
        "update-status", f"{pending[0]}=accepted", sandbox=connexi_sandbox
    )
    assert code == 0, err
    assert decode_orders(f"[{out.strip()}]")[0].order_status == "accepted"
    updates = tmp_path / "updates.txt"
    updates.write_text(f"{pending[1]} accepted\n{pending[2]}=cancelled\n")
    code, _, err = await run_cli("update-status", "--from", str(updates), sandbox=connexi_sandbox)
    assert code == 0, err
    assert "updated 2 order statuses" in err
    new = tmp_path / "new.jsonl"
    new.write_text(
        '{"remote_order_id": "X-1", "marketplace_code": "tkpd", "total": 15000.5}\n'
        '{"remote_order_id": "X-2", "marketplace_code": "shpe"}\n'
    )
    code, out, err = await run_cli("create", str(new), sandbox=connexi_sandbox)
    assert code == 0, err
    created = [decode_orders(f"[{line}]")[0] for line in out.splitlines()]
    assert [o.remote_order_id for o in created] == ["X-1", "X-2"]
    assert created[0].total == Decimal("15000.5")
    assert connexi_sandbox.recorder.count("POST /v1/order") == 1


async def test_exit_codes(connexi_sandbox: Sandbox) -> None:
    period = ("--since", "2026-10-01", "--until", "2026-10-02")
    code, _, err = await run_cli(
        "orders", *period, sandbox=connexi_sandbox, env={"CONNEXI_API_SECRET": "wrong"}
    )
    assert code == 3
    assert "HTTP 401" in err
    assert "wrong" not in err
    code, _, err = await run_cli("update-status", "999999999=accepted", sandbox=connexi_sandbox)
    assert code == 4
    assert "HTTP 404" in err
    code, _, err = await run_cli(
        "orders", *period, "--max-attempts", "1", sandbox=connexi_sandbox,
        env={"CONNEXI_BASE_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert code == 5
    assert "could not connect" in err
    assert "). No window was completed" in err  # one sentence ends before the next
    code, _, err = await run_cli("orders", "--since", "last tuesday", sandbox=connexi_sandbox)
    assert code == 2
    assert "is not a time" in err
    code, _, err = await run_cli("orders", *period)
    assert code == 2
    assert "CONNEXI_API_KEY is not set" in err
    code, _, err = await run_cli("update-status", "eleven=accepted", sandbox=connexi_sandbox)
    assert code == 2


async def test_failing_window_says_where_to_resume(connexi_sandbox: Sandbox) -> None:
    connexi_sandbox.faults.script("GET /v1/order", FaultKind.UNAVAILABLE)
    code, out, err = await run_cli(
        "orders", "--since", "2026-10-01", "--until", "2026-10-05", "--concurrency", "1",
        "--max-attempts", "1", sandbox=connexi_sandbox,
    )  # fmt: skip
    assert code == 4
    assert "window [2026-10-01T00:00:00Z, 2026-10-02T00:00:00Z) failed" in err
    assert "No window was completed: rerun with --since 2026-10-01T00:00:00Z." in err
    assert out == ""


@pytest.mark.parametrize(
    ("number", "code", "said"),
    [
        (signal.SIGINT, 130, "Interrupted."),
        (signal.SIGTERM, 143, "Terminated by SIGTERM."),
        (signal.SIGHUP, 129, "Terminated by SIGHUP."),
    ],
)
async def test_a_signal_leaves_complete_records(
    tmp_path: Path, number: int, code: int, said: str
) -> None:
    target = tmp_path / "orders.jsonl"
    async with Sandbox(orders=3_000, days=10, latency_ms=150) as sandbox:
        env = cli_env(sandbox)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "connexi_async", "orders", "--since", "2026-10-01",
            "--until", "2026-10-11", "--window", "2h", "--concurrency", "2", "-o", str(target),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        for _ in range(200):
            await asyncio.sleep(0.05)
            # Several whole windows in (about 25 orders each), so there is a resume point.
            if target.exists() and target.read_bytes().count(b"\n") >= 200:
                break
        process.send_signal(number)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == code
    message = err.decode()
    assert said in message
    assert "The output is complete up to" in message
    stamp = message.split("complete up to ")[1].split(": resume")[0]
    resume = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    lines = target.read_text().splitlines()
    assert lines
    orders = [decode_orders(f"[{line}]")[0] for line in lines]  # every line is a whole record
    ids_before_resume = [o.id for o in sandbox.dataset.between(OCT1, resume)]
    assert [o.id for o in orders][: len(ids_before_resume)] == ids_before_resume


async def test_sandbox_flag_says_so() -> None:
    code, out, err = await run_cli(
        "orders",
        "--sandbox",
        "--sandbox-orders",
        "500",
        "--since",
        "2026-10-01",
        "--until",
        "2026-10-02",
    )
    assert code == 0, err
    assert "in-process sandbox" in err
    assert len(out.splitlines()) > 0


@pytest.mark.parametrize(
    "command", ["orders", "stocks", "update-status", "create", "sandbox", "demo"]
)
async def test_help_has_an_example(command: str) -> None:
    code, out, _ = await run_cli(command, "--help")
    assert code == 0
    assert "example: connexi-async" in out


def test_time_and_duration_parsing() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert parse_time("2026-10-01") == OCT1
    assert parse_time("2026-10-01T07:00:00+07:00") == OCT1
    assert parse_time("2026-10-01T00:00:00Z") == OCT1
    assert parse_time("7d", now=lambda: now) == now - timedelta(days=7)
    assert parse_time("now", now=lambda: now) == now
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("90s") == timedelta(seconds=90)
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("soon")
    assert json.dumps(str(parse_duration("2w"))) == '"14 days, 0:00:00"'


async def test_progress_is_live_on_a_terminal_only() -> None:
    import pty

    async with Sandbox(orders=500, days=10, latency_ms=100) as sandbox:
        env = cli_env(sandbox)
        leader, follower = pty.openpty()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "connexi_async", "orders", "--since", "2026-10-01",
                "--until", "2026-10-11", "--concurrency", "1",
                stdout=asyncio.subprocess.PIPE, stderr=follower, env=env,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(process.communicate(), 60)
            os.close(follower)
            follower = -1
            screen = b""
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
        finally:
            os.close(leader)
            if follower != -1:
                os.close(follower)
    assert process.returncode == 0
    text = screen.decode()
    assert "\r\x1b[2Kwindows " in text  # the live line, redrawn in place
    assert "/10" in text
    assert "500 orders in" in text  # the summary
    assert b"windows" not in out  # never on stdout


async def test_hostile_answers_and_arguments_end_in_typed_exits(
    connexi_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Issue 11, item 6: no raw traceback, no exit code 1, whatever the input."""
    period = ("--since", "2026-10-01", "--until", "2026-10-03", "--concurrency", "1")
    for body in (b'{"orders":[{"id":1,"remarks":"\\ud800"}]}', b'{"orders":[{"id":1e999999}]}'):

        async def hostile(_: object, body: bytes = body) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        async with tiny_get_server(hostile) as url:
            target = tmp_path / "out.jsonl"
            code, _, err = await run_cli(
                "orders", *period, "-o", str(target), sandbox=connexi_sandbox,
                env={"CONNEXI_BASE_URL": url},
            )  # fmt: skip
        assert code == 4, err
        assert "Traceback" not in err
        assert "rerun with --since 2026-10-01T00:00:00Z" in err
    for args in (
        ("update-status", "²=accepted"),
        ("orders", "--since", "2026-10-01", "--window", "99999999999d"),
        ("orders", "--since", "99999999999d"),
    ):
        code, _, err = await run_cli(*args, sandbox=connexi_sandbox)
        assert code == 2, (args, err)
        assert "Traceback" not in err
    updates = tmp_path / "updates.json"
    for text in ('[{"id": 1}]', "[{not json"):
        updates.write_text(text)
        code, _, err = await run_cli(
            "update-status", "--from", str(updates), sandbox=connexi_sandbox
        )
        assert code == 2, err
        assert "Traceback" not in err


@contextlib.asynccontextmanager
async def tiny_get_server(handler: Any) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/order", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_version_insecure_http_and_wording(connexi_sandbox: Sandbox, tmp_path: Path) -> None:
    code, out, _ = await run_cli("--version")
    assert code == 0
    assert out.strip() == f"connexi-async {connexi_async.__version__}"
    code, _, err = await run_cli(
        "orders", "--since", "2026-10-01", sandbox=connexi_sandbox,
        env={"CONNEXI_BASE_URL": "http://example.com"},
    )  # fmt: skip
    assert code == 2
    assert "--allow-insecure-http" in err
    order = next(iter(connexi_sandbox.dataset.between(OCT1, OCT1 + timedelta(days=30))))
    code, _, err = await run_cli(
        "update-status", f"{order.id}={order.order_status or 'pending'}", sandbox=connexi_sandbox
    )
    assert code == 0, err
    assert "updated 1 order status\n" in err
    target = tmp_path / "stock.csv"
    code, _, err = await run_cli(
        "stocks", "--format", "csv", "-o", str(target), sandbox=connexi_sandbox
    )
    assert code == 0, err
    rows = len(target.read_text().splitlines()) - 1  # the header
    assert f"{rows:,} location rows in" in err


async def test_a_closed_stdout_ends_quietly(connexi_sandbox: Sandbox) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connexi_async", "orders", "--since", "2026-10-01",
        "--until", "2026-10-31", "--format", "csv",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(connexi_sandbox),
    )  # fmt: skip
    assert process.stdout is not None
    await process.stdout.readline()
    await process.stdout.readline()
    process.stdout.feed_eof()
    transport = process._transport  # type: ignore[attr-defined]
    transport.get_pipe_transport(1).close()  # what `| head -2` does when it exits
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 141
    assert "Broken pipe" not in err.decode()
    assert "Traceback" not in err.decode()


async def test_create_and_update_check_what_a_person_wrote(
    connexi_sandbox: Sandbox, tmp_path: Path
) -> None:
    one = tmp_path / "one.jsonl"
    one.write_text('{"remote_order_id": "X1", "marketplace_code": "bklp", "total": 5}\n')
    code, _, err = await run_cli("create", str(one), sandbox=connexi_sandbox)
    assert code == 0, err
    assert "created 1 order\n" in err
    for text, fragment in (
        ("", "holds no orders"),
        ('{"remote_order_id": "X2", "totl": 150000}', "did you mean total?"),
        ('{"remote_order_id": "X3", "total": "abc"}', "expected an amount"),
        ('{"remote_order_id": "X4", "order_date": "2026-11-27 10:00:00"}', "no time zone"),
    ):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        code, _, err = await run_cli("create", str(bad), sandbox=connexi_sandbox)
        assert code == 2, (text, err)
        assert fragment in err
    assert connexi_sandbox.recorder.count("POST /v1/order") == 1
    code, _, err = await run_cli(
        "orders", "--since", "2026-10-01T10:00:00", sandbox=connexi_sandbox
    )
    assert code == 2
    assert "no time zone" in err
    code, _, err = await run_cli("update-status", "73454=acceptd", sandbox=connexi_sandbox)
    assert code == 2
    assert "did you mean accepted?" in err
    assert connexi_sandbox.recorder.count("PATCH /v1/order") == 0
    code, _, err = await run_cli(
        "update-status", "73454=acceptd", "--allow-unknown-status", sandbox=connexi_sandbox
    )
    assert code == 4  # sent, and refused by the server


async def test_sync_usage_errors(connexi_sandbox: Sandbox, tmp_path: Path) -> None:
    state, out = str(tmp_path / "state.db"), str(tmp_path / "orders.jsonl")
    code, _, err = await run_cli("sync", "--checkpoint", state, "-o", out, sandbox=connexi_sandbox)
    assert code == 2
    assert "pass --since" in err
    code, _, err = await run_cli(
        "sync", "--checkpoint", state, "-o", "-", "--since", "2026-10-01", sandbox=connexi_sandbox
    )
    assert code == 2
    assert "-o FILE" in err
    code, _, err = await run_cli(
        "sync", "--checkpoint", state, "-o", out, "--since", "2026-10-01", "--window", "1d",
        sandbox=connexi_sandbox,
    )  # fmt: skip
    assert code == 0, err
    assert line_count(out) == len(connexi_sandbox.dataset)
    other = str(tmp_path / "other.jsonl")
    code, _, err = await run_cli(
        "sync", "--checkpoint", state, "-o", other, sandbox=connexi_sandbox
    )
    assert code == 2
    assert "belongs to" in err
    empty(out)  # someone emptied it
    code, _, err = await run_cli("sync", "--checkpoint", state, "-o", out, sandbox=connexi_sandbox)
    assert code == 2
    assert "truncated or replaced" in err

    from connexi_async.sync import SQLiteCheckpoints

    async with SQLiteCheckpoints(state).lock("orders"):
        code, _, err = await run_cli(
            "sync", "--checkpoint", state, "-o", out, sandbox=connexi_sandbox
        )
    assert code == 6
    assert "already running" in err


def line_count(path: str) -> int:
    return Path(path).read_bytes().count(b"\n")


def empty(path: str) -> None:
    Path(path).write_bytes(b"")


# -- sync: regressions found by review ------------------------------------------------------


def _lines(path: Path) -> list[int]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


async def test_sync_without_since_keeps_its_lookback(
    connexi_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Regression: a later run without --since started at the watermark, no lookback."""
    from connexi_async import NewOrder

    state, out = str(tmp_path / "s.json"), tmp_path / "o.jsonl"
    args = ("sync", "--checkpoint", state, "-o", str(out), "--window", "1d")
    code, _, err = await run_cli(*args, "--since", "2026-10-01", sandbox=connexi_sandbox)
    assert code == 0, err
    late = connexi_sandbox.add_orders(
        [NewOrder(remote_order_id="late", marketplace_code="bklp")],
        created_at=datetime.now(UTC) - timedelta(minutes=40),
    )
    code, _, err = await run_cli(*args, sandbox=connexi_sandbox)
    assert code == 0, err
    assert "1 new order appended" in err
    assert _lines(out)[-1] == late[0].id


async def test_sync_first_run_with_nothing_new_can_run_again(
    connexi_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Regression: a first run with no orders saved a checkpoint without the file's
    size, and every later run refused it."""
    state, out = str(tmp_path / "s.json"), str(tmp_path / "o.jsonl")
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for extra in (("--since", since), ()):
        code, _, err = await run_cli(
            "sync", "--checkpoint", state, "-o", out, *extra, sandbox=connexi_sandbox
        )
        assert code == 0, err
        assert "0 new orders appended" in err


async def test_sync_never_cuts_what_another_sync_appended(
    connexi_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Regression: two --keys on one file, and the first one's next run cut the second's
    committed orders off as if they were its own uncommitted window."""
    state, out = str(tmp_path / "s.db"), tmp_path / "o.jsonl"
    common = ("sync", "--checkpoint", state, "-o", str(out), "--window", "1d")
    code, _, err = await run_cli(
        *common, "--key", "a", "--since", "2026-10-20", sandbox=connexi_sandbox
    )
    assert code == 0, err
    code, _, err = await run_cli(
        *common, "--key", "b", "--since", "2026-10-25", sandbox=connexi_sandbox
    )
    assert code == 0, err
    before = out.read_bytes()
    code, _, err = await run_cli(*common, "--key", "a", sandbox=connexi_sandbox)
    assert code == 2
    assert "did not write" in err
    assert out.read_bytes() == before


async def test_sync_cuts_a_first_window_written_but_never_committed(
    connexi_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Regression: a crash between writing the first window and its commit left that
    window in the file, and the next run appended it again."""
    from connexi_async import ConnexiClient
    from connexi_async.cli import SyncOutput, _jsonl
    from connexi_async.sync import JSONFileCheckpoints, OrderSync

    state, out = tmp_path / "s.json", tmp_path / "o.jsonl"
    async with ConnexiClient(**connexi_sandbox.credentials) as client:
        sync = OrderSync(
            client, JSONFileCheckpoints(state), key="orders", start=OCT1, window=timedelta(days=1)
        )
        output = SyncOutput(str(out), str(state), "orders")
        async with sync.run_once() as run:
            await output.align(run)  # what the command does first
            async for batch in run:
                output._append(await _jsonl(batch.records))  # written, then "killed"
                break
    assert out.stat().st_size > 0
    code, _, err = await run_cli(
        "sync", "--checkpoint", str(state), "-o", str(out), "--window", "1d",
        sandbox=connexi_sandbox,
    )  # fmt: skip
    assert code == 0, err
    assert "removed" in err
    ids = _lines(out)
    assert len(ids) == len(set(ids)) == len(connexi_sandbox.dataset)
