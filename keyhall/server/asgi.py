"""The ASGI entry point uvicorn workers import: settings come from the KEYHALL_* environment."""

from keyhall.server.app import create_app

app = create_app()
