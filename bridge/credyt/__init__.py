"""Credyt's one home: the API client, the key check, asset precision and the sandbox."""
