"""Prometheus metrics (prometheus-client), served as /metrics.

Defined once per process in their own registry; several App instances in one process (tests)
share them, so tests compare values before and after rather than absolute numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

# ---- incoming
UPDATES_RECEIVED = Counter("linli_updates_received", "Updates stored in the inbox", registry=REGISTRY)
UPDATES_HANDLED = Counter(
    "linli_updates_handled", "Updates handled, by outcome (ok, user_error, error)", ["outcome"], registry=REGISTRY
)
HANDLING_SECONDS = Histogram(
    "linli_update_handling_seconds", "Time from storing an update to committing its effects", registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# ---- outgoing
MESSAGES_SENT = Counter("linli_messages_sent", "Bot API calls that Telegram accepted, by method", ["method"],
                        registry=REGISTRY)
FLOOD_WAITS = Counter("linli_telegram_429", "429 answers from Telegram", registry=REGISTRY)
RETRIES = Counter("linli_send_retries", "Bot API calls retried, by reason (429, network, server)", ["reason"],
                  registry=REGISTRY)
RESENDS = Counter(
    "linli_send_resends",
    "Messages sent again because the answer to an earlier attempt was lost (the at-least-once window)",
    registry=REGISTRY,
)

# ---- backlogs, set when scraped
INBOX_BACKLOG = Gauge("linli_inbox_backlog", "Stored updates not yet handled", registry=REGISTRY)
OUTBOX_BACKLOG = Gauge("linli_outbox_backlog", "Outbox rows pending or in flight", registry=REGISTRY)
JOBS_DUE = Gauge("linli_jobs_due", "Timers due and not yet run", registry=REGISTRY)
JOBS_LATE_SECONDS = Gauge("linli_jobs_late_seconds", "How long the oldest due timer has been waiting to run",
                          registry=REGISTRY)
JOB_LATENESS = Histogram(
    "linli_job_lateness_seconds", "How late a timer ran after its due time", registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)


def exposition() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(REGISTRY)
DEMAND_MOVES = Counter("linli_demand_moves", "Demands escalated or returned, by direction and the level moved to",
                       ["direction", "level"], registry=REGISTRY)
