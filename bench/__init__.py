"""Benchmarks: scripts that measure the pipeline and print (or write) the figures; never imported by the library."""
