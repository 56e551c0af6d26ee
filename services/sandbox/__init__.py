"""Stand-ins of the vendor APIs: simulation mode runs the real connectors against them.

Each stand-in is a stateful WSGI app that follows the vendor contract in `shared/docs/`, served
on a localhost socket (`server.serve`), behind `traffic.TrafficControl` for rate limits and
injected faults.
"""
