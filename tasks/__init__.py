"""Prefect tasks: each wraps one ``deid`` function and adds retries, caching, logging and MLflow."""
