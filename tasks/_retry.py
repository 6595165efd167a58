"""Which task failures are worth a retry: the one condition every ``@task(retries=...)`` uses.

A retry helps when the failure may not happen again (a busy file system, a lost worker, a
network hiccup). It only delays the error, and repeats its log, when the same inputs fail the same
way: deid's own errors (a bad config value, a dataset in the wrong layout, an undecodable image) and
``ValueError``/``TypeError`` (a wrong value or type from the config reaching a function).
"""

from __future__ import annotations

from typing import Any

from deid.errors import DeidError

__all__ = ["DETERMINISTIC", "is_deterministic", "retry_unless_deterministic"]

#: exception types that fail again on the same inputs
DETERMINISTIC: tuple[type[BaseException], ...] = (DeidError, ValueError, TypeError)


def is_deterministic(exc: BaseException | None) -> bool:
    return isinstance(exc, DETERMINISTIC)


def retry_unless_deterministic(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: False (fail now) when the run failed with a deterministic error."""
    exc = state.data
    if not isinstance(exc, BaseException):
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # the state holds no readable exception: keep the task's retry policy
            return True
    return not is_deterministic(exc)
