"""deid: de-identify labelled face datasets and audit the result with attackers.

The library is pure: it never imports an orchestrator or a tracker. ``tasks/`` and ``flows/``
wrap it for Prefect and MLflow.
"""

__version__ = "0.1.0"
