"""Adapters that rebuild other projects' RSSMs from their own checkpoints.

Each module reads one project's files (never executing code from them), infers the sizes from
tensor shapes, and exposes the result as an `RSSMCell` + `WorldModel` so the shared filter in
`beliefscope.rssm.core` runs it exactly as the project's own code would.
"""
