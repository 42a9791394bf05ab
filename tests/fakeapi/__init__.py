"""A fake Telegram Bot API server for end-to-end tests (see server.FakeTelegram)."""

from tests.fakeapi.methods import SentRecord
from tests.fakeapi.server import FailedCall, FakeTelegram, Limits, Rejection
from tests.fakeapi.validate import ApiError, UploadedFile
from tests.fakeapi.world import BOT_ID, BOT_USERNAME, find_button

__all__ = [
    "BOT_ID",
    "BOT_USERNAME",
    "ApiError",
    "FailedCall",
    "FakeTelegram",
    "Limits",
    "Rejection",
    "SentRecord",
    "UploadedFile",
    "find_button",
]
