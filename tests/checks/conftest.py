"""Fixtures for the check tests (the manifest factories live in ``factories.py``)."""

from __future__ import annotations

import pytest

from .factories import make


@pytest.fixture
def manifest():
    """The :func:`~tests.checks.factories.make` factory: ``manifest(image_rows({"a": 10}), image_size=16)``."""
    return make
