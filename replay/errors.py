"""Errors that reach the user as one line and exit code 2.

Every problem with an input (a store, a config string, a spec file) is raised as a
subclass of `InputError` whose message names the input and what is wrong with it. The
commands turn it into a single line on stderr and exit with status 2.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input: the message names the input (file, option) and the problem, on one line."""

    exit_code = 2

    def __init__(self, where: str, problem: str):
        self.where = str(where)
        self.problem = " ".join(str(problem).split())  # keep it on one line
        super().__init__(f"{self.where}: {self.problem}")


class StoreError(InputError):
    """A store on disk is missing a file, has a bad column, a dangling key, ..."""


class ConfigError(InputError):
    """A configuration (model and sample count per stage) is malformed or unknown."""
