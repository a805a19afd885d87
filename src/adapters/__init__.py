"""Implementations of the application ports: job stores, clocks, random sources."""
