"""Logging setup. Linli's own log lines carry ids (update, chat, user, demand, outbox row), method
names and error descriptions, never message texts or people's names; this keeps the frameworks'
loggers from adding them.

At DEBUG, python-telegram-bot logs every Bot API call with its parameters and answer (message
texts, names, whole updates), and the HTTP clients log URLs with the bot token. So LOG_LEVEL=DEBUG
turns on debug lines for Linli's own loggers only; these stay at INFO or above.
"""

from __future__ import annotations

import logging
import sys

# Libraries whose debug (or info) lines carry message content or the token.
CONTENT_LOGGERS = {"telegram": logging.INFO, "aiogram": logging.INFO, "httpx": logging.WARNING,
                   "httpcore": logging.WARNING, "aiohttp.access": logging.WARNING,
                   # SQL with its parameters (a ballot answer next to its rater, say)
                   "aiosqlite": logging.INFO}


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    chosen = logging.getLevelNamesMapping()[level]
    logging.getLogger().setLevel(chosen)  # also when handlers existed already (basicConfig then does nothing)
    for name, floor in CONTENT_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, chosen))
