"""`incidents backup FILE` and `incidents restore FILE`: a consistent copy of the database while the app serves,
and a guarded way back.

SQLite: the online backup API, copying in steps from inside **one** read transaction. In WAL mode a reader never
blocks writers, and the open read transaction pins one snapshot for every step (a step outside it would see other
processes' commits and restart the copy, over and over under steady ingestion). The copy goes to a temporary file
beside FILE, is switched out of WAL mode (one self-contained file) and renamed into place only when complete.

PostgreSQL: `pg_dump --format=custom` (one repeatable-read snapshot by design), restored by `pg_restore` in a single
transaction. The password goes to the client through PGPASSWORD, never on a command line or in a message.

Not in a backup: the job queue (`instance/queue.sqlite3` or Redis) and the instance `secret_key` (README, *Backups*).
Restore refuses a database holding any user or incident unless forced; a backup of an older version restores as is
and `incidents db upgrade` (or `serve`) migrates it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import sqlalchemy as sa
from flask import current_app

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"  # the first bytes of pg_dump's custom format
STEP_PAGES = 1024  # pages (4 KiB each by default) copied per backup step
GUARDED_TABLES = ("user", "incident")  # restore refuses a database holding rows in these unless forced


class BackupError(Exception):
    """Backup or restore refused or failed; the message says why and what to do, and never holds a password."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    seconds: float


def backup(url: str | sa.URL, path: Path, *, overwrite: bool = False) -> BackupResult:
    """Write a consistent copy of the database at `url` to `path` (temp file beside it, renamed when complete)."""
    url = sa.make_url(url)
    path = Path(path)
    if path.exists() and not overwrite:
        raise BackupError(f"{path} exists; choose a new name or pass --force to replace it.")
    if not path.parent.is_dir():
        raise BackupError(f"No directory {path.parent} to write the backup into.")
    _not_the_database(url, path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    started = time.monotonic()
    try:
        if url.get_backend_name() == "sqlite":
            _sqlite_backup(_sqlite_path(url), tmp)
        elif url.get_backend_name() == "postgresql":
            _run_pg("pg_dump", url, ["--format=custom", "--file", str(tmp)])
        else:
            raise BackupError(f"Backups of {url.get_backend_name()} databases are not supported.")
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return BackupResult(path, path.stat().st_size, time.monotonic() - started)


def restore(url: str | sa.URL, path: Path, *, force: bool = False) -> str:
    """Replace the database at `url` with the backup at `path`; returns the restored schema revision."""
    url = sa.make_url(url)
    path = Path(path)
    backend = url.get_backend_name()
    _not_the_database(url, path)
    _check_format(path, backend)
    if not force:
        held = holdings(url)
        if any(held.values()):
            what = " and ".join(f"{n} {table}{'s' if n != 1 else ''}" for table, n in held.items() if n)
            raise BackupError(f"The database holds {what}; restoring would replace them. "
                              "Pass --force to restore anyway.")
    if backend == "sqlite":
        _sqlite_restore(path, _sqlite_path(url))
    else:
        _run_pg("pg_restore", url, ["--clean", "--if-exists", "--no-owner", "--no-privileges",
                                    "--single-transaction", str(path)])
    return schema_revision(url)


def holdings(url: str | sa.URL) -> dict[str, int]:
    """Rows in the guarded tables of the database at `url` (0 for a table that does not exist yet)."""
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite" and not _sqlite_path(url).exists():
        return dict.fromkeys(GUARDED_TABLES, 0)  # nothing to lose, and connecting would create the file
    with _connect(url) as conn:
        tables = set(sa.inspect(conn).get_table_names())
        return {t: conn.scalar(sa.select(sa.func.count()).select_from(sa.table(t))) if t in tables else 0
                for t in GUARDED_TABLES}


def schema_revision(url: str | sa.URL) -> str:
    """The Alembic revision recorded in the database at `url` ("" when it has none)."""
    with _connect(sa.make_url(url)) as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return ""
        return conn.scalar(sa.text("SELECT version_num FROM alembic_version")) or ""


@contextlib.contextmanager
def _connect(url: sa.URL) -> Iterator[sa.Connection]:
    """A short-lived connection of its own; a database that cannot be reached is a BackupError, not a traceback."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    except sa.exc.OperationalError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise BackupError(f"Cannot use the database {url.render_as_string(hide_password=True)}: {reason}") from None
    finally:
        engine.dispose()


# --- SQLite -----------------------------------------------------------------------------------------------------

def _sqlite_path(url: sa.URL) -> Path:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError("Only a SQLite database file can be backed up or restored.")
    return Path(database)


def _not_the_database(url: sa.URL, path: Path) -> None:
    """Replacing a live SQLite file (or its -wal/-shm) by renaming over it would lose every later commit."""
    if url.get_backend_name() != "sqlite":
        return
    database = _sqlite_path(url).resolve()
    if path.resolve() in {database, database.with_name(database.name + "-wal"),
                          database.with_name(database.name + "-shm")}:
        raise BackupError(f"{path} is the database itself; give another file.")


def _sqlite_backup(source_path: Path, target_path: Path) -> None:
    if not source_path.is_file():
        raise BackupError(f"No database at {source_path}.")
    source = sqlite3.connect(source_path, isolation_level=None)
    try:
        source.execute("PRAGMA busy_timeout = 30000")
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read snapshot starts here
        target = sqlite3.connect(target_path, isolation_level=None)
        try:
            source.backup(target, pages=STEP_PAGES)
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
        finally:
            target.close()
        source.execute("COMMIT")
    except sqlite3.Error as e:
        raise BackupError(f"SQLite backup failed: {e}") from None
    finally:
        source.close()


def _sqlite_restore(backup_path: Path, db_path: Path) -> None:
    try:
        source = sqlite3.connect(backup_path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise BackupError(f"Cannot open {backup_path}: {e}") from None
    try:
        problems = [row[0] for row in source.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise BackupError(f"{backup_path} is damaged: {'; '.join(problems[:3])}")
        db_path.parent.mkdir(parents=True, exist_ok=True)
        target = sqlite3.connect(db_path, isolation_level=None)
        try:
            target.execute("PRAGMA busy_timeout = 30000")
            source.backup(target)  # one step: one write transaction on the target, all or nothing
        finally:
            target.close()
    except sqlite3.Error as e:
        raise BackupError(f"SQLite restore failed: {e}") from None
    finally:
        source.close()


# --- both -------------------------------------------------------------------------------------------------------

def _check_format(path: Path, backend: str) -> None:
    """A clear refusal, before anything is touched, for a missing file, a file of the other database or no backup."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise BackupError(f"Cannot read {path}: {e.strerror}.") from None
    kind = "sqlite" if head.startswith(SQLITE_MAGIC) else "postgresql" if head.startswith(PGDUMP_MAGIC) else None
    if kind is None:
        expected = "a SQLite database file" if backend == "sqlite" else "a pg_dump custom-format archive"
        raise BackupError(f"{path} is not a backup made by `incidents backup` ({expected} was expected).")
    if kind != backend:
        names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
        raise BackupError(f"{path} is a {names[kind]} backup, but this app uses {names.get(backend, backend)}; "
                          "restore it on the database it came from.")
    if kind == "sqlite":
        _check_sqlite_backup(path)
    else:
        _check_pg_archive(path)


def _check_sqlite_backup(path: Path) -> None:
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
                                 ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise BackupError(f"{path} is not a readable SQLite database: {e}.") from None
    if not found:
        raise BackupError(f"{path} is a SQLite database but not one of this app (it has no alembic_version table).")


def _check_pg_archive(path: Path) -> None:
    """pg_restore reads the archive's table of contents (no database needed): damage and foreign dumps show here."""
    listing = subprocess.run([_pg_client("pg_restore"), "--list", str(path)],  # noqa: S603
                             capture_output=True, text=True, check=False)
    if listing.returncode != 0:
        raise BackupError(f"{path} is not a readable pg_dump archive: {listing.stderr.strip()[-500:]}")
    if " TABLE public alembic_version " not in listing.stdout:
        raise BackupError(f"{path} is a pg_dump archive but not one of this app (it has no alembic_version table).")


def _fsync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _pg_client(program: str) -> str:
    exe = shutil.which(program)
    if exe is None:
        raise BackupError(f"{program} is not installed (or not on PATH). Install the PostgreSQL client tools, "
                          f"the server's major version or newer (Debian/Ubuntu: apt install postgresql-client).")
    return exe


def _run_pg(program: str, url: sa.URL, args: list[str]) -> None:
    """Run pg_dump or pg_restore against `url`; the password travels in PGPASSWORD, never in argv or messages."""
    exe = _pg_client(program)
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    libpq = sa.URL.create("postgresql", username=url.username, host=url.host, port=url.port,
                          database=url.database, query=url.query).render_as_string(hide_password=False)
    done = subprocess.run([exe, "--dbname", libpq, *args], env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().replace(libpq, "<database>")
        raise BackupError(f"{program} failed (exit {done.returncode}): {detail[-2000:]}")


# --- command line -----------------------------------------------------------------------------------------------

def _where(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists (an existing file is never overwritten "
              "otherwise).")
def backup_command(file: Path, force: bool):
    """Write a consistent copy of the database to FILE while the app serves (SQLite backup API; pg_dump
    --format=custom on PostgreSQL). Not included: the job queue and the instance secret_key."""
    url = current_app.config["DATABASE_URL"]
    try:
        result = backup(url, file, overwrite=force)
    except BackupError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Backed up {_where(url)} to {result.path} ({result.size:,} bytes, {result.seconds:.1f} s).")


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Restore even though the database holds users or incidents "
              "(they are replaced).")
def restore_command(file: Path, force: bool):
    """Replace the database with the backup in FILE; refuses a database holding any user or incident unless
    --force. Stop the app first; `incidents serve` (or `db upgrade`) then migrates an older backup."""
    url = current_app.config["DATABASE_URL"]
    try:
        revision = restore(url, file, force=force)
    except BackupError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Restored {file} into {_where(url)} (schema revision {revision or 'none'}). "
               "`incidents serve` or `incidents db upgrade` brings an older schema up to date.")
