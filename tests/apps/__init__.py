"""ASGI apps that the tests run under a real uvicorn in a subprocess."""
