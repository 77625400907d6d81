"""PostgreSQL storage: URL checks, a fast connection probe, and a lock for claiming trials.

Users write `postgresql://USER:PASSWORD@HOST:PORT/DB` (or `postgres://`); SQLAlchemy's
default driver for that form is psycopg2, which we do not install, so `driver_url()`
maps it to `postgresql+psycopg://` (psycopg 3, the `postgres` extra). `probe()` connects
once with a short connect_timeout, so an unreachable server, a wrong password, a missing
database or driver is one line naming the fix (password masked) within seconds, before
any work starts, instead of a traceback after a two-minute TCP timeout.

`advisory_lock()` serialises "count the trials, then ask for one" between workers on any
number of machines: a transaction-level advisory lock, released on commit, or by the
server when the holder's connection dies.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

from explorer.core.errors import UserError
from explorer.store.outage import is_connection_error
from explorer.store.urls import mask_url as mask

SCHEMES = ("postgresql", "postgres")
DRIVER = "postgresql+psycopg"
CONNECT_TIMEOUT_S = 5
FORM = "postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"
LOCK_CLASS = 0x45585052  # 'EXPR': our namespace for pg_advisory_xact_lock(class, study_id)


def parse(url: str):
    """The SQLAlchemy URL, its driver set to psycopg; UserError (masked) when malformed."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception as exc:  # ArgumentError, or ValueError for a non-numeric port
        raise UserError(f"malformed PostgreSQL URL {mask(url)} ({_first_line(exc, url)}); "
                        f"write {FORM}") from None
    problem = _problem(u)
    if problem:
        raise UserError(f"malformed PostgreSQL URL {mask(url)}: {problem}; write {FORM}")
    if u.drivername in SCHEMES:
        u = u.set(drivername=DRIVER)
    return u


def _problem(u) -> str | None:
    if u.host and "@" in u.host:
        return "'@' in the password must be written %40"
    if not u.database:
        return "no database name after the host"
    if not u.host and "host" not in u.query:
        return "no host"
    if not u.username:
        return "no user name"
    return None


def driver_url(url: str) -> str:
    """The URL SQLAlchemy and Optuna's RDBStorage should open (psycopg 3 driver)."""
    return parse(url).render_as_string(hide_password=False)


def engine_kwargs(connect_timeout_s: int = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """RDBStorage engine_kwargs: fail fast on connect, drop connections the server closed."""
    return {"pool_pre_ping": True, "connect_args": {"connect_timeout": connect_timeout_s}}


def probe(url: str, timeout_s: int = CONNECT_TIMEOUT_S) -> str:
    """Connect once (`SELECT 1`); returns driver_url(url), or raises a one-line UserError."""
    import sqlalchemy

    u = parse(url)
    try:
        engine = sqlalchemy.create_engine(u, poolclass=sqlalchemy.pool.NullPool,
                                          connect_args={"connect_timeout": timeout_s})
    except ImportError:
        raise UserError("PostgreSQL storage needs the psycopg driver: pip install 'explorer[postgres]' "
                        "(or pip install 'psycopg[binary]')") from None
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.DBAPIError as exc:
        raise UserError(explain(exc, u, url, timeout_s)) from None
    finally:
        engine.dispose()
    return u.render_as_string(hide_password=False)


def explain(exc: BaseException, u, url: str, timeout_s: int) -> str:
    """A one-line reason and fix for a failed connection; the password never appears."""
    text = _first_line(getattr(exc, "orig", None) or exc, url, u.password)
    where = f"{u.host or u.query.get('host')}:{u.port or 5432}"
    low = text.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return (f"PostgreSQL at {where} refused the login of user {u.username!r}: wrong user or "
                f"password; fix the URL {mask(url)}")
    if "does not exist" in low and "database" in low:
        return (f"database {u.database!r} does not exist on {where}: create it "
                f"(createdb -O {u.username} {u.database}) or fix the URL {mask(url)}")
    if "connection refused" in low:
        return (f"cannot reach PostgreSQL at {where}: connection refused; is the server running "
                f"and listening on that address and port? ({mask(url)})")
    if "timeout" in low:
        return (f"no answer from PostgreSQL at {where} within {timeout_s}s: check the host, the "
                f"port and any firewall ({mask(url)})")
    if "translate host name" in low or "name or service not known" in low:
        return f"unknown host in {mask(url)}: check the host name"
    if "pg_hba.conf" in low:
        return (f"PostgreSQL at {where} does not accept this machine or user (pg_hba.conf): "
                f"add a host line for it ({mask(url)})")
    return f"cannot open PostgreSQL storage {mask(url)}: {text}"


def _first_line(exc: BaseException | Any, url: str, password: str | None = None) -> str:
    """The exception's first non-empty line with every form of the password masked."""
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = mask(text.replace(url, mask(url)), url)
    for secret in {password, _raw_password(url)} - {None, ""}:
        text = text.replace(secret, "***")
    return text[:300]


def _raw_password(url: str) -> str | None:
    """The password as written in the URL (perhaps percent-encoded), parsed or not."""
    m = re.match(r"[^:]+://[^:@/]*:(?P<pw>.*)@", url.split("?", 1)[0])
    return m.group("pw") if m else None


@contextlib.contextmanager
def advisory_lock(storage, study_id: int, outage=None) -> Iterator[None]:
    """Hold a cluster-wide lock for one study until the block ends (RDBStorage on PostgreSQL).

    With an `outage` (explorer.store.outage), taking the lock rides out a lost server; losing
    the connection while holding it frees the lock on the server, so releasing it then is a no-op.
    """
    import sqlalchemy

    def take():
        conn = storage.engine.connect()
        try:
            conn.begin()
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:c, :s)"),
                         {"c": LOCK_CLASS, "s": int(study_id)})
        except BaseException:
            _close(conn)
            raise
        return conn

    conn = take() if outage is None else outage.call(take)
    try:
        yield
    finally:
        try:
            conn.commit()
        except sqlalchemy.exc.DBAPIError as exc:
            if outage is None or not is_connection_error(exc):
                raise
        finally:
            _close(conn)


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a dead connection: the server already dropped it and its lock
        pass
