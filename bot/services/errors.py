"""Errors a service raises for the person acting; handlers render them from the catalog."""

from __future__ import annotations

from typing import Any


class Term(str):
    """A parameter that is itself a catalog key, translated when the error is rendered."""

    __slots__ = ()


class UserError(Exception):
    """Something the user can fix: rendered as catalog `key` with `params`; nothing was saved."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


class Denied(UserError):
    """The acting user may not do this here."""


class NotFound(UserError):
    pass


class ChooseCommunity(UserError):
    """A private command from a user of several communities: the bot must ask which one."""

    def __init__(self, options: list[tuple[int, str]]) -> None:
        super().__init__("err_choose_community")
        self.options = options
