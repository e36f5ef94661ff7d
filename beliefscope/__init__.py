"""Beliefscope: belief-state forensics for RSSM world models."""

__version__ = "0.1.0"
