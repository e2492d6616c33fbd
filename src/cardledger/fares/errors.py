"""Exceptions of the fare system: a broken feed or config, and a fare nobody defined.

A feed or config is checked as a whole: every problem is collected as a `Problem`
(file, line, column, message) and one `FeedError` (or `ConfigError`) carries all of
them, so a feed author fixes everything in one round. Nothing is half-loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from cardledger.errors import LedgerError

#: How many problems `str(FeedError)` lists before it says "… and N more".
PROBLEMS_SHOWN_MAX = 50


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a feed or config file.

    `line` is the 1-based physical line of the CSV row (the header is line 1); 0 means
    the file as a whole (a missing file, a TOML key). `column` is the GTFS field name
    (or the TOML key path), or None when the problem is not about one field.
    """

    file: str
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        if self.column is None:
            return f"{self.file}:{self.line}: {self.message}"
        return f"{self.file}:{self.line}: column {self.column}: {self.message}"


class FeedError(LedgerError, ValueError):
    """A GTFS fare feed has problems; `.problems` lists every one, and nothing was loaded.

    Fix each problem listed (file:line: column: message) and load the feed again.
    """

    what = "the GTFS fare feed"

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(tuple(self.problems))

    def __str__(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{self.what} has {count} {noun}; nothing was loaded (fix them and load again):"]
        lines.extend(f"  {problem}" for problem in self.problems[:PROBLEMS_SHOWN_MAX])
        if count > PROBLEMS_SHOWN_MAX:
            lines.append(f"  … and {count - PROBLEMS_SHOWN_MAX} more")
        return "\n".join(lines)


class ConfigError(FeedError):
    """The fare config (fares.toml) has problems; `.problems` lists every one."""

    what = "the fare config fares.toml"


class UnknownFareError(LedgerError, LookupError):
    """No fare leg rule matches a leg, so the feed defines no fare for it.

    Add a fare_leg_rules.txt row that covers the leg (or a catch-all row with empty
    network and areas), or check the network, stops and time of the tap.
    """
