"""Block Kit builders: pure functions from domain objects to slack_sdk models (which check
Slack's limits when serialised). Channel messages show identifiers masked, never in clear."""
