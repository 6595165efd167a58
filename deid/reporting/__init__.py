"""Plots and the HTML audit report."""
