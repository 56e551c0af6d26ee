"""What the vendors' stand-ins share: simulation mode runs the real connectors against them.

Each stand-in (services/vendors/<name>/standin.py) is a stateful WSGI app that follows the
vendor's contract in `shared/docs/`, served on a localhost socket (`server.serve`), behind
`traffic.TrafficControl` for rate limits and injected faults, seeded with `people`.
"""
