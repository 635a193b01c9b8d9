"""The one exception configuration loading raises."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ConfigError", "Problem"]


class Problem(NamedTuple):
    """One thing wrong with the configuration.

    ``source`` is where the value came from (a file path, an environment variable name, or
    ``defaults``), ``key`` the dotted key (empty when the problem is the whole source, such as
    invalid TOML), ``message`` what is wrong and what was expected. None of them ever holds a
    secret's value.
    """

    source: str
    key: str
    message: str

    def __str__(self) -> str:
        if self.key:
            return f"{self.source}: {self.key}: {self.message}"
        return f"{self.source}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; the message lists every problem found, one per line."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = [str(p) for p in self.problems]
        if len(lines) == 1:
            message = lines[0]
        else:
            message = f"{len(lines)} configuration problems:\n" + "\n".join(
                f"  {line}" for line in lines
            )
        super().__init__(message)
