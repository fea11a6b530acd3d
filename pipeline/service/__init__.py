"""The local job service behind ``facestyle serve``: an HTTP/JSON API for editors and scripts.

    config.py   settings, state folder, token, which files a job may touch
    runner.py   background workers (one per device) running the journal's jobs
    app.py      the FastAPI routes
    server.py   binding, lock and lifecycle
"""
from pipeline.service.config import PathNotAllowed, PathPolicy, ServeConfig, default_state_dir

__all__ = ["PathNotAllowed", "PathPolicy", "ServeConfig", "default_state_dir"]
