"""Run audit: catch the replay and model bugs that averaged losses hide.

`audit(model, episodes)` runs every check of `beliefscope.values.audit.CHECKS` on one
checkpoint over a sample of episodes; pure given the model and the episodes (no files, no
store). Each check lives in the module named for what it tests: `alignment` (actions, rewards),
`resets`, `observation`, `latents` (collapse, groups, memory), `semantics` (KL settings).
`ingest.audit_cli` is the command that finds, stores and prints.
"""

from ingest.audit.battery import audit

__all__ = ["audit"]
