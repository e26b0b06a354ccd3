"""What the tests share beside the fixtures in tests/conftest.py: the exactly-once
driver and its payment histories, the bridge as a subprocess, log capture, and the
operator commands on the command line."""
