"""credyt-bridge: Stripe and Paddle payment webhooks to exactly-once Credyt adjustments."""

__version__ = "0.1.0"
