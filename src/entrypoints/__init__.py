"""Runnable parts of conveyor: HTTP API, worker, command line and their wiring."""
