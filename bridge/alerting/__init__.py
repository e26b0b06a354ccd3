"""Alerts: tell an operator about a dead adjustment, a failed event, a growing backlog,
an opened breaker or a rejected Credyt key, before a customer does.

```
conditions.py  what happened: store rows (dead, failed, backlog) and process state
ledger.py      the `alerts` / `alert_messages` tables: noticed once, grouped, claimed
dedupe.py      one message per condition and window, then a summary (pure)
messages.py    the words: what, whom, which payment, and the command that fixes it
sender.py      one POST to a webhook (JSON) or Slack ({"text": ...}) target
worker.py      the background task of `serve`, with retries from the store
```
"""
