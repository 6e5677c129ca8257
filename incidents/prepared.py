"""A few hot Core statements run on the DBAPI cursor, compiled once per dialect (the webhook writer's, issue 18).

SQLAlchemy's per-execution machinery (cache key, execution context, result object) costs the webhook writer about
as much as the statement itself: an alert upsert took 57-61 µs through `Connection.execute` and 30-32 µs on the
cursor (bench/README.md §3). `Prepared` keeps what matters of that machinery: the statement is compiled by
SQLAlchemy for the connection's dialect; every parameter goes through the compiled statement's own bind processors
(enums, UTC datetimes, JSON) and result columns through their result processors; a DBAPI error is raised as
SQLAlchemy's (`sa.exc.OperationalError` still means "retry"); the engine's cursor events are dispatched (statement
listeners and tracing see it; `echo` does not). The transaction is the session's: the connection is taken through
`session.connection()`, so SQLite's BEGIN IMMEDIATE and PostgreSQL's pool are as for any statement.

Only for statements whose Python-side defaults are constants and without post-compile (expanding IN) parameters;
`Prepared` refuses others when it compiles them, so a statement changed later cannot silently lose a default.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class _Plan:
    sql: str
    positional: tuple[str, ...] | None  # the bind names in order (qmark), or None for a named style (pyformat)
    names: tuple[str, ...]
    fixed: dict[str, Any]  # binds the caller never passes: literals compiled into the statement (`x + 1`)
    binds: dict[str, Callable[[Any], Any]]
    row: type | None  # a named tuple of the result columns, None for a statement without rows
    results: tuple[Callable[[Any], Any] | None, ...] | None  # None when no result column needs processing


class Prepared:
    """`statement`, run by `execute(session, params)`. As `Connection.execute` does, it is compiled for the names
    of the parameters given (an INSERT writes exactly those columns), once per dialect and set of names."""

    def __init__(self, statement: sa.Executable):
        self.statement = statement
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}

    def _plan(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
        plan = self._plans.get((dialect.name, keys))
        if plan is None:
            plan = self._plans[dialect.name, keys] = self._compile(dialect, keys)
        return plan

    def _compile(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(keys))
        defaults = [*compiled.insert_prefetch, *compiled.update_prefetch]
        if compiled.post_compile_params or any(not (c.default is not None and c.default.is_scalar) for c in defaults):
            raise ValueError(f"{self.statement!s:.60}: a prepared statement takes no expanding IN and no Python-side "
                             "default but a constant one")
        fixed = _literals(compiled) | {compiled.bind_names[compiled.binds[c.key]]: c.default.arg for c in defaults}
        names = tuple(dict.fromkeys(compiled.bind_names.values()))
        columns = [entry[0] for entry in compiled._result_columns]
        results = tuple(entry[3]._cached_result_processor(dialect, None) for entry in compiled._result_columns)
        results = results if any(results) else None
        return _Plan(str(compiled), tuple(compiled.positiontup) if compiled.positiontup is not None else None,
                     names, fixed, dict(compiled._bind_processors),
                     namedtuple("Row", columns, rename=True) if columns else None, results)  # noqa: PYI024

    def execute(self, session: Session, params: Mapping[str, Any]) -> _Result:
        conn = session.connection()
        dialect = conn.dialect
        plan = self._plan(dialect, tuple(params))
        binds, fixed = plan.binds, plan.fixed
        values = {}
        for name in plan.names:
            if name in params:
                value = params[name]
            elif name in fixed:
                value = fixed[name]
            else:
                raise sa.exc.InvalidRequestError(f"A value is required for bind parameter {name!r}")
            process = binds.get(name)
            values[name] = process(value) if process is not None else value  # None too, as SQLAlchemy does
        args: Any = [values[name] for name in plan.positional] if plan.positional is not None else values
        sql = plan.sql
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            # The engine's cursor events still see the statement (SQL logging, tracing, tests); with no execution
            # context, as for a statement SQLAlchemy did not run (`context` is None).
            for listener in conn.dispatch.before_cursor_execute:
                sql, args = listener(conn, cursor, sql, args, None, False)
            cursor.execute(sql, args)
            rows = cursor.fetchall() if cursor.description else []
            rowcount = cursor.rowcount
            for listener in conn.dispatch.after_cursor_execute:
                listener(conn, cursor, sql, args, None, False)
        except dialect.loaded_dbapi.Error as e:
            raise sa.exc.DBAPIError.instance(sql, args, e, dialect.loaded_dbapi.Error, dialect=dialect) from e
        finally:
            cursor.close()
        if plan.results is not None:
            rows = [tuple(p(v) if p is not None else v for p, v in zip(plan.results, row, strict=True)) for row in rows]
        return _Result([plan.row(*row) for row in rows] if plan.row is not None else rows, rowcount)


def _literals(compiled) -> dict[str, Any]:
    """The values of the binds a caller does not pass (literals in the statement, such as the 1 of `x + 1`)."""
    out = {}
    for bind, name in compiled.bind_names.items():
        if not bind.required and bind.callable is None:
            out[name] = bind.effective_value
    return out


class _Result:
    """The rows of one execution, with the little of `CursorResult` the hot path uses."""

    def __init__(self, rows: list, rowcount: int):
        self.rows = rows
        self.rowcount = rowcount

    def __iter__(self):
        return iter(self.rows)

    def first(self):
        return self.rows[0] if self.rows else None

    def one(self):
        if len(self.rows) != 1:
            raise sa.exc.NoResultFound("expected one row") if not self.rows else \
                sa.exc.MultipleResultsFound("expected one row")
        return self.rows[0]

    def scalar(self):
        return self.rows[0][0] if self.rows else None

