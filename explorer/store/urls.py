"""Storage URLs: the default, the kind of a URL, the file behind it, the absolute form, masking.

The embedded default is an Optuna journal file, `runs/<study>.journal`: no server,
several local processes can run one study at once (appends are serialised by a lock
file; plain SQLite raises "database is locked" under concurrent writers), and
optuna-dashboard opens it. See docs/studies.md for the measurements behind the choice.

A plain path or `journal:PATH` is a journal file (or an SQLite file, recognised by its
header); `sqlite:///PATH`, `postgresql://USER@HOST/DB` and `mysql://...` are databases.
`mask_url()` hides passwords; every message that shows a URL goes through it.
"""

from __future__ import annotations

import re
from pathlib import Path

from explorer.errors import UserError

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
SQLITE_MAGIC = b"SQLite format 3\x00"
FORMS = "use a path, journal:PATH, sqlite:///PATH or postgresql://USER@HOST/DB"

# user:PASSWORD@ (up to the last @ before the host, so an unencoded @ in it is hidden too)
_SECRET = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^\s/?#]*@")
# libpq's query-string forms: ?password=..., &sslpassword=..., &passfile=...
_SECRET_QUERY = re.compile(r"(?i)(?P<head>[?&](?:password|passwd|pwd|sslpassword|passfile)=)[^&#\s]*")


def mask_url(text: str) -> str:
    """Hide every password in `text`: postgresql://u:***@host/db, ...?password=***."""
    text = _SECRET.sub(lambda m: m.group("head") + "***@", str(text))
    return _SECRET_QUERY.sub(lambda m: m.group("head") + "***", text)


def default_storage_url(study_name: str) -> str:
    """The embedded default: a journal file under runs/."""
    return f"runs/{study_name}.journal"


def storage_kind(url: str) -> str:
    """'journal', 'sqlite', 'postgresql' or 'rdb' (another database: mysql://, or a scheme
    check_url refuses). A plain path is 'sqlite' when the file starts with SQLite's header."""
    url = str(url).strip()
    if url.startswith("journal:"):
        return "journal"
    if "://" in url:
        scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
        return {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}.get(scheme, "rdb")
    if url.startswith("sqlite:"):
        return "sqlite"  # sqlite:PATH without //: check_url refuses it
    try:
        with open(url, "rb") as f:
            return "sqlite" if f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC else "journal"
    except OSError:
        return "journal"


def check_url(url: str) -> None:
    """UserError (secrets masked) for a URL that names no storage or one that would lose the study."""
    if "://" in url and url.split("://", 1)[0].split("+", 1)[0].lower() not in RDB_SCHEMES:
        raise UserError(f"unknown storage URL {mask_url(url)!r}: {FORMS}")
    if "://" not in url and re.match(r"[A-Za-z][\w+.-]+:", url) and not url.startswith("journal:"):
        # sqlite:runs/x.db or postgresql:host would otherwise become a file named "sqlite:..."
        raise UserError(f"storage {mask_url(url)!r} looks like a URL without '//': {FORMS}")
    if re.fullmatch(r"sqlite(\+\w+)?://(/(:memory:)?)?", url.strip()):
        raise UserError(f"storage {url!r} is an in-memory database that other processes and later "
                        "runs cannot see; give a file: sqlite:///runs/NAME.db")


def journal_path(url: str) -> Path:
    """The file behind a journal URL (`journal:PATH` or a plain path)."""
    return Path(url[len("journal:"):] if url.startswith("journal:") else url)


def sqlite_path(url: str) -> Path:
    """The database file of sqlite:///relative, sqlite:////absolute (query dropped) or a plain path."""
    if "://" not in url:
        return Path(url)
    return Path(url.split(":///", 1)[1].split("?", 1)[0]) if ":///" in url else Path("")


def absolute_url(url: str) -> str:
    """A journal file's (or SQLite database's) absolute path, so a file exported here finds its
    study from any folder; other URLs unchanged."""
    if "://" not in url:
        return str(journal_path(url).resolve())  # journal:PATH, or a plain path to either kind
    head, sep, rest = url.partition(":///")
    if head.split("+", 1)[0].lower() == "sqlite" and sep:
        path, q, query = rest.partition("?")
        if path and path != ":memory:" and not path.startswith("/"):  # sqlite:///rel.db is relative
            return f"{head}:///{Path(path).resolve()}{q}{query}"
    return url


def resolve_target(study: str, storage: str | None) -> tuple[str, str, list[str]]:
    """(study name, storage URL, objectives) from a study file path or a study name."""
    from explorer.config import load_config

    if study.endswith((".yaml", ".yml")) or Path(study).is_file():
        config = load_config(study)
        return config.name, storage or config.storage or default_storage_url(config.name), list(config.objectives)
    return study, storage or default_storage_url(study), []
