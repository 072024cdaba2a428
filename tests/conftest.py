"""Shared fixtures: the real embedded broker for integration tests, started once per session."""

from __future__ import annotations

import pytest

from services.shared.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker():
    with EmbeddedBroker() as running:
        yield running
