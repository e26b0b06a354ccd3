"""What operators run: operations, the admin API, backfill, sending, tables."""
