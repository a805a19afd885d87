"""The HTTP API: a Litestar app built by create_app(container)."""

from conveyor.entrypoints.api.app import create_app

__all__ = ["create_app"]
