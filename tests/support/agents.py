"""Test support: agents fixtures (see docstrings)."""

from __future__ import annotations
