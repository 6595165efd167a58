"""Prefect flows composing ``tasks/``; deployments are declared in ``flows/deployments.py``."""
