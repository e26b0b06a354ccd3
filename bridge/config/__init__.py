"""The configuration: YAML with line numbers, the typed schema and its loading."""

from pathlib import Path

EXAMPLE_CONFIG = Path(__file__).with_name("config.example.yaml")
"""The embedded defaults: what `demo` runs on and the container's default config."""
