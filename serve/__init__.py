"""The matching API (FastAPI): ``create_app`` builds it, ``reid serve`` runs it."""

from serve.app import create_app

__all__ = ["create_app"]
