"""The sandbox's side of a worker: a loop that answers the caller's requests.

Started inside the sandbox as `python -I -B -c BOOT HANDLER` (worker.py builds the command),
with the requests on fd 3 and the replies on fd 4. HANDLER names a class `module:Class`
under the `replay` package; it is instantiated once, then each request (a dict) is passed to
`handler.handle(request, progress)`, which returns (header dict, list of arrays) or raises.
A raised exception becomes an error reply (`{"error": ..., "where": ...}`) and the loop goes
on; the loop ends when the caller closes fd 3.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

REQUESTS, REPLIES = 3, 4

BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from replay.sandbox.serve import main; main(sys.argv[2])")


def describe_exception(e: BaseException, workdir: str) -> dict:
    """One line for the caller: the problem and, for code in the sandbox's folder (the
    untrusted program), the file and line where it was raised."""
    where = getattr(e, "where", None) if hasattr(e, "problem") else None
    problem = getattr(e, "problem", None) if where is not None else None
    if problem is None:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        problem = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
        if isinstance(e, SystemExit):
            problem = f"called sys.exit({e.code!r})"
    at = None
    for fr in reversed(traceback.extract_tb(e.__traceback__)):
        if fr.filename and os.path.abspath(fr.filename).startswith(workdir + os.sep):
            at = f"{os.path.basename(fr.filename)} line {fr.lineno}"
            break
    return {"error": " ".join(str(problem).split())[:1000], "where": where, "at": at}


def main(handler_spec: str) -> None:
    from . import frames

    workdir = os.getcwd()
    sys.path.insert(0, workdir)  # the program's own modules (its folder)

    def send(header, arrays=()):
        frames.write_all(REPLIES, frames.encode_reply(header, arrays))

    try:
        mod_name, cls_name = handler_spec.split(":")
        handler = getattr(importlib.import_module(mod_name), cls_name)()
    except BaseException as e:  # noqa: BLE001 - reported to the caller, then stop
        send(describe_exception(e, workdir))
        return
    send({"ready": True})
    while True:
        req = frames.read_request(REQUESTS)
        if req is None:
            return
        try:
            header, arrays = handler.handle(req, lambda n: send({"progress": int(n)}))
        except BaseException as e:  # noqa: BLE001 - the untrusted code's failures are replies
            if isinstance(e, KeyboardInterrupt):
                raise
            send(describe_exception(e, workdir))
            continue
        send(header, arrays)
