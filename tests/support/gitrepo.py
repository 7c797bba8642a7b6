"""Test support: gitrepo fixtures (see docstrings)."""

from __future__ import annotations
