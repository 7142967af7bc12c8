"""The reliability suite's shared scale switch, servers and call checks.

``ACTIONREC_RELIABILITY=full`` runs every part at full scale (more fuzz cases, more abrupt
disconnects, longer soaks); the default short run keeps the suite within CI's time. The fuzz
tests count the cases they run, and the session's summary prints the totals.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from service.config import ServerConfig

FULL = os.environ.get("ACTIONREC_RELIABILITY") == "full"
TIMEOUT = 30  # seconds any one call may take: a hang fails the test instead of holding up the suite

CASES: Counter[str] = Counter()  # fuzz cases run, by test
STATUSES: Counter[tuple[str, str]] = Counter()  # fuzzed calls' answers, by (method, status)
REPORT: list[str] = []  # figures a test measured, for the session's summary


def scaled(short: int, full: int) -> int:
    return full if FULL else short


def fuzz_settings(short: int, full: int) -> settings:
    """Hypothesis settings for ``short`` cases (derandomised, so CI sees the same cases every
    run) or, in the full run, ``full`` random ones."""
    return settings(
        max_examples=scaled(short, full),
        derandomize=not FULL,
        deadline=None,  # a call's own deadline catches a hang; hypothesis's would flag slow pose
        database=None,  # nothing written into the checkout
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        print_blob=True,
    )


def pytest_terminal_summary(terminalreporter) -> None:
    if CASES:
        per_test = ", ".join(f"{name} {count}" for name, count in sorted(CASES.items()))
        mode = "full" if FULL else "short"
        terminalreporter.write_line(f"reliability fuzz ({mode} run): {sum(CASES.values())} cases ({per_test})")
    if STATUSES:
        answers = ", ".join(f"{method} {status} {n}" for (method, status), n in sorted(STATUSES.items()))
        terminalreporter.write_line(f"reliability fuzz answers: {answers}")
    for line in REPORT:
        terminalreporter.write_line(f"reliability: {line}")


@pytest.fixture(scope="session")
def full() -> bool:
    """Whether this is the full-scale run (``ACTIONREC_RELIABILITY=full``)."""
    return FULL


@pytest.fixture(scope="session")
def make_config(models_dir: Path, tmp_path_factory) -> Callable[..., ServerConfig]:
    """A server configuration on the test models with its own actions file; ``overrides`` on top."""

    def make(**overrides) -> ServerConfig:
        state = tmp_path_factory.mktemp("state")
        settings = {"models_dir": models_dir, "actions_file": state / "actions.json", "workers": 2}
        return ServerConfig(**{**settings, **overrides})

    return make


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# The service's own loggers, and the one that reports exceptions escaping a future's callback
# (the batcher hands results to the streams that way).
_SERVICE_LOGGERS = ("service", "concurrent.futures")


@pytest.fixture
def service_warnings() -> Iterator[list[logging.LogRecord]]:
    """Warnings and errors the service logs during the test (caught on its loggers themselves:
    the service's JSON set-up stops records from reaching the root logger)."""
    handler = _Records()
    for name in _SERVICE_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    try:
        yield handler.records
    finally:
        for name in _SERVICE_LOGGERS:
            logging.getLogger(name).removeHandler(handler)
