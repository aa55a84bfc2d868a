"""Shared test helpers: unique names, so tests on the one session broker never see each other's data."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def unique() -> str:
    """A short id to make topic, group and app names unique to one test."""
    return uuid.uuid4().hex[:10]
