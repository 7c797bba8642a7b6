"""Test support: redis fixtures (see docstrings)."""

from __future__ import annotations
