"""The project's errors: one root, one line each, an exit code per kind.

Every error meant for the user is a `ToolError` whose message names the input or the endpoint
and what is wrong, on one line. The commands (`replay.clitools.main_wrapper`) print it as
`error: WHERE: PROBLEM` on stderr and exit with the class's code:

    ToolError          1  the command failed (e.g. some cells of a sweep failed)
      InputError       2  bad input: a store, a config string, a spec, an option
        StoreError     2  a store on disk is missing a file, has a bad column, ...
        ConfigError    2  a configuration or an option value is malformed or unknown
      BackendError     3  a model server or engine failed (collection)
      LLMError         3  an LLM endpoint failed (searchers)

Backend and LLM failures are siblings of bad input, not kinds of it: code that catches
`InputError` to reword a user's mistake must not swallow an endpoint that went down.
"""

from __future__ import annotations


class ToolError(Exception):
    """The root: a failure the user should read as one line (`where: problem`)."""

    exit_code = 1
    MAX_LEN = 600  # a line, not a dump of whatever bad value was given

    def __init__(self, where: str, problem: str):
        self.where = _short(" ".join(str(where).split()), 300)
        self.problem = _short(" ".join(str(problem).split()), self.MAX_LEN)  # keep it on one line
        super().__init__(f"{self.where}: {self.problem}")

    def __reduce__(self):  # picklable across worker processes with its two arguments
        return (type(self), (self.where, self.problem))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


class InputError(ToolError):
    """Bad input: the message names the input (file, option) and the problem, on one line."""

    exit_code = 2


class StoreError(InputError):
    """A store on disk is missing a file, has a bad column, a dangling key, ..."""


class ConfigError(InputError):
    """A configuration (model and sample count per stage) is malformed or unknown."""


class EndpointError(ToolError):
    """A model endpoint (a server, an engine) failed: unreachable, refused, or not speaking its API."""

    exit_code = 3


class BackendError(EndpointError):
    """The model server or engine used for collection failed."""


class LLMError(EndpointError):
    """The LLM endpoint of a searcher could not give an answer (one line, names the endpoint)."""
