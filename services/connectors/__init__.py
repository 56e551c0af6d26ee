"""What every vendor connector shares: the Connector protocol (base), HTTP with retries and
limits (http), the rate budget shared by processes (budget). The connectors themselves are in
their vendors' packages (services/vendors/)."""
