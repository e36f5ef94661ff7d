"""The SQL store: `open_store(url)` gives a `Store` whose `writer` (ingest) and `queries` (API,
dashboard) are the only ways in; `upgrade(url)` migrates the schema."""

from beliefscope.store.engine import Store, open_store, upgrade

__all__ = ["Store", "open_store", "upgrade"]
