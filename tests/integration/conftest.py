from __future__ import annotations

import pytest

from services.bench.deployment import Deployment


@pytest.fixture
def make_eraser(broker, tmp_path):
    """Start an isolated eraser (own topics, groups and processes) on the session broker."""
    started = []

    def make(banks=None, start=True, env=None):
        eraser = Deployment(broker.bootstrap_servers, tmp_path, banks, env)
        if start:
            eraser.pipeline.start()
        started.append(eraser)
        return eraser

    yield make
    for eraser in started:
        eraser.close()


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
