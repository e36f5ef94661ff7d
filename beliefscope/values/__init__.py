"""Domain values: frozen dataclasses every layer agrees on, one module per domain.

`traces` (runs, checkpoints, episodes, traces and their series), `jobs`, `review` (rules,
flags, scores) and `access` (tokens, webhooks, principals); `page` is the list envelope. Nothing
here reads files or the store: these are the words, the layers above say what to do with them.
"""
