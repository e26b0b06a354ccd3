"""The operator console: a small server-rendered web UI over the operator's commands."""
