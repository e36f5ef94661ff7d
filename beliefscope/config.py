"""One settings object for every process; values come from `BELIEFSCOPE_*` variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BELIEFSCOPE_", extra="ignore")

    home: Path = Path.home() / ".beliefscope"
    """Where the embedded store and downloaded/derived files live by default."""

    store: str = ""
    """SQLAlchemy URL of the store; empty means SQLite at `home/beliefscope.db`."""

    data_roots: list[Path] = []
    """Directories the server may read episodes and checkpoints from (besides those ingested)."""

    host: str = "127.0.0.1"
    port: int = 8050
    open_reads: bool | None = None
    """Reads without a token; default: allowed on loopback binds only."""

    allowed_hosts: list[str] = []
    """`Host` names the server answers besides the loopback names (against DNS rebinding);
    empty: the bind address (this machine's name on a wildcard bind); `*`: any."""

    cookie_secure: bool = True
    """Send the login cookie over HTTPS only (browsers treat http://localhost as secure); turn
    off only for a plain-HTTP server on a trusted network."""

    session_hours: float = 12.0
    """How long a browser sign-in lasts (never past its token's expiry)."""

    auth_failures_per_minute: int = 10
    """Failed sign-ins and bad tokens one client may make per minute before 429."""

    webhook_allow: list[str] = []
    """Webhook targets allowed although they are loopback, private or link-local: addresses or
    networks (`127.0.0.1`, `10.1.0.0/16`), optionally with a port (`127.0.0.1:9000`)."""

    max_inflated_bytes: int = 4 * 2**30
    """A replay archive (`.npz`, a saved TensorDict) whose compressed members inflate to more
    is refused before anything is decompressed."""

    max_inflate_ratio: float = 200.0
    """... as is one inflating to more than this many times its size on disk (the MuJoCo
    world's frames deflate 25-28x; a zip bomb of zeros ~1000x)."""

    torch_threads: int = 0
    """Threads for model math; 0 = leave one core free for the server."""

    test_pg: str = ""
    """PostgreSQL URL the tests use (`BELIEFSCOPE_TEST_PG`)."""

    def store_url(self) -> str:
        if self.store:
            return self.store
        return f"sqlite:///{self.home / 'beliefscope.db'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
