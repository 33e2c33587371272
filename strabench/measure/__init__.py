"""Complexity and speed measurements: parameters, MACs under named conventions, latency."""
