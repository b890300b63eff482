"""`replay sandbox`: what the sandbox for untrusted programs guarantees on this machine.

Registered by replay/cli.py with `cli.add_command(sandbox)`; imports nothing heavy.
"""

from __future__ import annotations

import click


@click.command("sandbox", short_help="Which guarantees the sandbox for untrusted code holds here.")
@click.option("--without", "without", multiple=True, metavar="LAYER",
              help="Leave a layer out, to see how the sandbox degrades (pid_ns, net_ns, ipc_ns, mount_ns, user_ns, "
                   "subreaper, landlock, seccomp, nobody); repeatable.")
@click.option("--check", is_flag=True, help="Also run a few hostile programs and show how each is stopped.")
def sandbox(without, check):
    """Show the layers of the sandbox that runs untrusted code here (ChatDev programs,
    --controller classes, LLM-written controllers), and which guarantees hold.

    Every guarantee that does not hold on this machine is listed as NO with the reason.
    docs/sandbox.md explains each layer and the table per platform.
    """
    from . import isolation

    iso = isolation(without=tuple(without))
    click.echo(iso.summary())
    click.echo(iso.table())
    if check:
        import os

        from . import Limits, run_script

        progs = [
            ("loops forever", "while True:\n    pass"),
            ("allocates 10 GB", "x = bytearray(10 << 30)"),
            ("reads /etc/shadow", "print(open('/etc/shadow').read())"),
            ("writes outside its folder", "open('/tmp/sandbox-check-outside.txt', 'w').write('x')"),
            ("opens a socket", "import socket\nsocket.create_connection(('127.0.0.1', 1), timeout=1)"),
            ("kills its parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
            ("kills the caller", f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)"),
            ("kills its own group", "import os, signal\nos.killpg(os.getpgrp(), signal.SIGKILL)"),
        ]
        click.echo("")
        for what, src in progs:
            r = run_script(src, limits=Limits(wall_s=2.0, memory_mb=512), without=tuple(without))
            click.echo(f"{what:<28} {r.reason()}")
