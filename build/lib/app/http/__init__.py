"""The HTTP face of the service: ingest, the read API, health, the status page (README, "HTTP API").

The core (app/service.py and everything it wires) never imports this package.
"""
