"""`python -m flops_management serve`: run the management API under uvicorn."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from flops_management.api.main import create_app
from flops_management.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flops_management")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
