"""The webhook receiver: the Starlette app and the servers that run it."""
