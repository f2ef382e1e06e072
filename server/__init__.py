"""quiver's HTTP service (FastAPI + uvicorn). Not built yet: see the server issue."""
