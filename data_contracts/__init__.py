"""Parquet schemas of deid's tables and their validation: the one place that says what a row is."""

from data_contracts.images import *  # noqa: F401,F403
from data_contracts.images import __all__, schema_by_name  # noqa: F401
