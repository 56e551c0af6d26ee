"""The work of the scheduled jobs, free of Slack and of APScheduler: each function takes the
time from its caller, claims what it sends in the database, and returns what it did."""
