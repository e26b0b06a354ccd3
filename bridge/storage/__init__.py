"""The inbox and outbox: the Store protocol, its rows, the named queries and the two backends."""
