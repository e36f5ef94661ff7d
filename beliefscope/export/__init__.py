"""Exports of stored traces and flags: CSV/Parquet tables, TensorBoard event files, an offline
W&B run. Everything here reads through the store's read layer (`beliefscope.store.queries`
and the review store's functions) and knows nothing of models or replay files."""
