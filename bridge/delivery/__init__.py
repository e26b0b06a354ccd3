"""From the outbox to Credyt: the deliverer, its retry policy and the circuit breaker."""
