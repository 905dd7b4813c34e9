"""The web app: a drawing page and a small REST API over the same prediction path as the CLI.

``create_app(model)`` returns a FastAPI application; ``digits serve`` runs it with uvicorn.
"""

from digit_recognizer.serve.app import MAX_UPLOAD_BYTES, create_app

__all__ = ["MAX_UPLOAD_BYTES", "create_app"]
