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
