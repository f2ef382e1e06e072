"""quiver's HTTP service: a FastAPI app over the embedded database.

Installed as ``quiver.server`` (the repository keeps it in the top-level ``server/`` folder).
Run it with ``quiver serve`` or ``uvicorn --factory quiver.server.app:create_app``.
"""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
