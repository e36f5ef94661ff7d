"""The SQL store: `open_store(url)` gives a `Store` whose surfaces are the only ways in:
`writer` (ingest), `queries` (the read layer), `reviews` (rules, flags, metric columns, scores)
and `access` (tokens, webhooks); `upgrade(url)` migrates the schema. ORM rows never leave this
package: every surface returns values from `beliefscope.values`."""

from beliefscope.store.engine import Store, open_store, upgrade

__all__ = ["Store", "open_store", "upgrade"]
