"""The publishing task: scrubbed, shuffled, re-identified release with its manifest."""

from __future__ import annotations

from prefect import get_run_logger, task

from deid.release import private_strings
from deid.release import publish_release as _publish
from deid.release_policy import ReleasePolicy
from tasks._retry import retry_unless_deterministic

__all__ = ["publish_release"]


@task(retries=2, retry_delay_seconds=[2, 5, 15], retry_condition_fn=retry_unless_deterministic,
      task_run_name="publish {method}")
def publish_release(anonymized_dir: str, root: str, dataset: str, method: str, manifest: dict, images_dir: str,
                    private_dir: str, policy: ReleasePolicy, run_margin: float, audit: dict,
                    license: str | None = None, source: dict | None = None) -> dict:
    """Publish under the release policy; the input's identities and source file names are checked
    not to appear anywhere. ``license`` (the config's ``release.license``) goes to the manifest and the
    dataset card; ``source`` (``synthetic``, ``description``) to the card. The manifest's internal
    pointers (run ids, code commit) go to the release's private record, not to the release."""
    res = _publish(anonymized_dir, root, dataset, method=method, manifest=manifest,
                   private=private_strings(images_dir), private_dir=private_dir, originals_dir=images_dir,
                   policy=policy, run_margin=run_margin, audit=audit, license=license, source=source)
    get_run_logger().info("release %s %s (%d rows) at %s", dataset, res.version, res.rows, res.path)
    return {"path": str(res.path), "version": res.version, "reused": res.reused, "rows": res.rows}
