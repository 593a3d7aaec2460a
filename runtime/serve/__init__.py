"""`gem-run serve`: one warm Interpreter behind a bounded queue, over HTTP (docs/serve-api.md).

    app = build_app(ServeOptions(bundle="bundles/demo"))      # a Starlette app; `gem-run serve` runs it on uvicorn

The `serve` extra (starlette, uvicorn, python-multipart, prometheus_client) is imported only here.
"""
from .app import ServeOptions, build_app

__all__ = ["ServeOptions", "build_app"]
