"""Tasks retry what may pass next time, never a deterministic error (a bad config value, a bad dataset)."""

from __future__ import annotations

import inspect

import pytest
from prefect.states import Failed

from deid.errors import ConfigError, DatasetLayoutError, ImageDecodeError, MethodError
from tasks._retry import retry_unless_deterministic


@pytest.mark.reliability(section='5. Config types checked before any work', case='deterministic errors in tasks (config, method, leak)',
                         before='retried twice',
                         after='not retried; transient OS and network errors still are')
@pytest.mark.parametrize("exc, retried", [
    (ConfigError("blur: sigma must be a number"), False),
    (DatasetLayoutError("no such folder"), False),
    (ImageDecodeError("truncated"), False),
    (MethodError("bad output"), False),
    (TypeError("'<=' not supported between instances of 'str' and 'int'"), False),
    (ValueError("k must be positive"), False),
    (OSError("stale file handle"), True),
    (ConnectionError("server closed the connection"), True),
    (TimeoutError("worker lost"), True),
    (RuntimeError("CUDA out of memory"), True),
])
def test_retry_condition(exc, retried):
    assert retry_unless_deterministic(None, None, Failed(data=exc)) is retried


def test_a_state_without_an_exception_keeps_the_retry_policy():
    assert retry_unless_deterministic(None, None, Failed(data=None)) is True


def test_every_retried_task_uses_the_condition():
    import tasks.data
    import tasks.methods
    import tasks.release
    import tasks.study
    import tasks.tracking
    from prefect import Task

    modules = (tasks.data, tasks.methods, tasks.release, tasks.study, tasks.tracking)
    retried = [t for m in modules for t in vars(m).values() if isinstance(t, Task) and t.retries]
    assert {t.name for t in retried} >= {"ingest_dataset", "fit_and_anonymize", "publish_release", "log_audit",
                                         "open_study"}
    for t in retried:
        assert t.retry_condition_fn is retry_unless_deterministic, t.name
        assert inspect.isfunction(t.retry_condition_fn)  # Prefect calls it only if it is a plain function
