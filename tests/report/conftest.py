import pytest

from tests.report.history import build_history


@pytest.fixture
def history(session):
    return build_history()
