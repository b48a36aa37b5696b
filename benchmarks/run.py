"""Run every benchmark and print the results table: ``python -m benchmarks`` (or ``make bench``).

The runner starts the fake CloudSync on a loopback port, creates a SQLite database in a temporary
directory and, when each server answers, a throwaway PostgreSQL database and a throwaway MariaDB
(or MySQL) one; it removes all of them when it ends, however it ends.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

from django_cloudsync.testing import FakeCloudSyncServer

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
DEFAULT_ROTATION_ROWS = 100_000
QUICK_ROTATION_ROWS = 10_000


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CLOUDSYNC_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL server to create a throwaway database on; 'off' to skip (default: %(default)s)",
    )
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("CLOUDSYNC_BENCH_MYSQL_URL", DEFAULT_MYSQL_URL),
        help="MariaDB/MySQL server to create a throwaway database on; 'off' to skip (default: %(default)s)",
    )
    parser.add_argument(
        "--rotation-rows",
        type=int,
        default=None,
        help=f"rows for the key rotation throughput (default: {DEFAULT_ROTATION_ROWS:,}, or "
        f"{QUICK_ROTATION_ROWS:,} with --quick; memory is also measured at a tenth)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer timing pairs and rotation rows: a smoke run, not a result"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated benchmarks to run: requests, refresh, sign_in, async, crypto, rotation",
    )
    args = parser.parse_args(argv)
    if args.rotation_rows is None:
        args.rotation_rows = QUICK_ROTATION_ROWS if args.quick else DEFAULT_ROTATION_ROWS
    if args.rotation_rows < 10:
        parser.error("--rotation-rows must be at least 10")
    return args


def _display(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or default_port}"


def _turned_off(url: str) -> bool:
    return url.strip().lower() in ("", "off", "none")


def _create_postgres_database(url: str) -> tuple[str | None, str]:
    """(name of a new empty database, "") or (None, why there is none)."""
    if _turned_off(url):
        return None, "PostgreSQL turned off (--postgres-url off)"
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        return None, "psycopg is not installed (pip install -e '.[test]')"
    name = f"cloudsync_bench_{os.getpid()}"
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        return None, f"PostgreSQL unreachable at {_display(url, 5432)} ({type(exc).__name__})"
    return name, ""


def _drop_postgres_database(url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, connect_timeout=3, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _mysql_statement(url: str, statement: str) -> None:
    """Run one statement on the MariaDB/MySQL server at ``url`` (no database selected)."""
    import MySQLdb

    parts = urlsplit(url)
    # closing(): the stubs leave Connection.close() untyped, which strict mypy refuses to call.
    with closing(
        MySQLdb.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            connect_timeout=3,
        )
    ) as connection:
        connection.cursor().execute(statement)


def _create_mysql_database(url: str) -> tuple[str | None, str]:
    """(name of a new empty database, "") or (None, why there is none)."""
    if _turned_off(url):
        return None, "MariaDB turned off (--mysql-url off)"
    try:
        import MySQLdb
    except ImportError:
        return None, "mysqlclient is not installed (pip install -e '.[mysql]')"
    name = f"cloudsync_bench_{os.getpid()}"  # digits and letters only: safe to name unquoted
    try:
        _mysql_statement(url, f"DROP DATABASE IF EXISTS {name}")
        _mysql_statement(url, f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    except MySQLdb.Error as exc:
        return None, f"MariaDB unreachable at {_display(url, 3306)} ({type(exc).__name__})"
    return name, ""


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    selected = {name.strip() for name in args.only.split(",") if name.strip()}
    workdir = Path(tempfile.mkdtemp(prefix="cloudsync-bench-"))
    server = FakeCloudSyncServer().start()
    postgres_db, postgres_skip = _create_postgres_database(args.postgres_url)
    mysql_db, mysql_skip = _create_mysql_database(args.mysql_url)
    try:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="benchmarks.settings",
            CLOUDSYNC_BENCH_DIR=str(workdir),
            CLOUDSYNC_BENCH_FAKE_URL=server.url,
        )
        if postgres_db:
            os.environ.update(
                CLOUDSYNC_BENCH_POSTGRES_URL=args.postgres_url, CLOUDSYNC_BENCH_POSTGRES_DB=postgres_db
            )
        if mysql_db:
            os.environ.update(CLOUDSYNC_BENCH_MYSQL_URL=args.mysql_url, CLOUDSYNC_BENCH_MYSQL_DB=mysql_db)
        servers = [
            ("PostgreSQL", "postgres" if postgres_db else None, postgres_skip),
            ("MariaDB", "mysql" if mysql_db else None, mysql_skip),
        ]
        return _run(args, selected, server, workdir, servers)
    finally:
        from django.db import connections

        connections.close_all()
        server.stop()
        if postgres_db:
            _drop_postgres_database(args.postgres_url, postgres_db)
        if mysql_db:
            _mysql_statement(args.mysql_url, f"DROP DATABASE IF EXISTS {mysql_db}")
        shutil.rmtree(workdir, ignore_errors=True)


def _run(
    args: argparse.Namespace,
    selected: set[str],
    server: FakeCloudSyncServer,
    workdir: Path,
    servers: list[tuple[str, str | None, str]],
) -> int:
    import django

    django.setup()
    from django.core.management import call_command

    from . import bench_async, bench_crypto, bench_refresh, bench_requests, bench_rotation, bench_sign_in
    from .context import Context
    from .report import Row, render

    started = time.monotonic()
    aliases = ["default", *(alias for _label, alias, _reason in servers if alias)]
    for alias in aliases:
        call_command("migrate", database=alias, verbosity=0, interactive=False)
    context = Context(
        server=server,
        workdir=workdir,
        servers=servers,
        quick=args.quick,
        rotation_rows=args.rotation_rows,
    )
    # Run the longest (key rotation: 100,000 rows) last; show the rows in the order.
    benchmarks: list[tuple[str, Callable[[Context], list[Row]]]] = [
        ("requests", bench_requests.run),
        ("refresh", bench_refresh.run),
        ("sign_in", bench_sign_in.run),
        ("async", bench_async.run),
        ("crypto", bench_crypto.run),
        ("rotation", bench_rotation.run),
    ]
    shown_order = ["requests", "refresh", "sign_in", "rotation", "crypto", "async"]
    results: dict[str, list[Row]] = {}
    for name, benchmark in benchmarks:
        if selected and name not in selected:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        context.fake.reset()
        try:
            results[name] = benchmark(context)
        except Exception as exc:
            traceback.print_exc()
            failed = Row(f"{name} benchmark", "runs", f"failed: {type(exc).__name__}", "", met=False)
            results[name] = [failed]
    rows = [row for name in shown_order for row in results.get(name, [])]
    print(render(rows))
    print(
        f"\n{len(rows)} figures in {time.monotonic() - started:.0f} s; "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}; Django {django.get_version()}."
    )
    return 1 if any(row.met is False for row in rows) else 0
