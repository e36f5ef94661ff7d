"""Shared data for the fault suite: the ingest tests' small world and briefly trained run."""

from tests.ingest.conftest import _home, run_dir, world  # noqa: F401  (fixtures, shared)
