"""Shared command-line plumbing: one-line errors with their exit codes, the synthetic notice, and
the checks every command applies to the same kinds of option (seeds, budgets, counts, outputs).

Every check raises a `ConfigError`/`InputError` naming the option and the value, so that each
command refuses bad input in one line, the same way, before any work:

    check_seed("--seed", value)          0 <= seed <= 2^63 - 1 (the kernels' seed is 64-bit)
    check_budget("--budget", value)      a finite number of units > 0, or None
    check_count("--workers", n)          an integer >= 1 (never silently coerced)
    check_replicates(...)                >= 1, and bounded by the memory the replay needs
    check_output_file(path, "--out")     a file we can create (not a folder; its folder writable)
    check_output_dir(path, "--out")      a folder we can create or write (not a file)
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import click

from .errors import ConfigError, InputError, ToolError

MAX_SEED = 2 ** 63 - 1
MAX_COUNT = 2 ** 31 - 1  # trials, workers, samples: an int32 in every table and kernel


def main_wrapper(group: click.Group, argv=None) -> None:
    """Run a click group; a ToolError becomes one line on stderr and its exit code (bad input 2,
    endpoint failure 3; see replay.errors). Click's own usage errors are one line too (exit 2),
    and so are input too deep or too large for the interpreter (a last line of defence: the
    readers name their file themselves)."""
    try:
        group.main(args=argv, standalone_mode=False)
    except ToolError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        click.echo(f"error: {' '.join(e.format_message().split())}{hint}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except RecursionError:
        click.echo("error: input nested too deeply to read (a JSON or YAML value nested thousands of levels)", err=True)
        sys.exit(2)
    except MemoryError:
        click.echo("error: out of memory: the input or the options ask for more than this machine has "
                   "(fewer replicates, questions or configurations)", err=True)
        sys.exit(1)


def announce(store) -> None:
    """Every command that reads a synthetic store says so, once, on stderr."""
    if store.synthetic:
        click.echo(f"note: store {store.name!r} is SYNTHETIC (simulated, not collected from real models)", err=True)


def open_announced(path):
    from .store import open_store

    store = open_store(path)
    announce(store)
    return store


def json_safe(x):
    """Non-finite floats as null, recursively (JSON has no NaN or Infinity): what every
    `--json` output passes through before `json.dumps(..., allow_nan=False)`."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


# --------------------------------------------------------------------------------------------
# Checks of option values


def check_seed(where: str, value) -> int:
    """A seed: an integer from 0 to 2^63 - 1."""
    if isinstance(value, bool):
        raise ConfigError(where, f"expected an integer seed, got {value!r}")
    try:
        x = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(where, f"expected an integer seed, got {str(value)[:40]!r}") from None
    if not 0 <= x <= MAX_SEED:
        raise ConfigError(where, f"must be an integer from 0 to 2^63-1, got {str(value)[:40]}")
    return x


class SeedType(click.ParamType):
    """`type=SEED` on a click option: `check_seed` at parse time, one line on error."""

    name = "seed"

    def convert(self, value, param, ctx):
        return check_seed(param.opts[0] if param is not None and param.opts else "--seed", value)


SEED = SeedType()


def check_budget(where: str, value) -> float | None:
    """A budget: None, or a finite number > 0 (nan, inf, 0 and negatives are refused: every
    configuration would silently be infeasible, or every one feasible)."""
    if value is None:
        return None
    try:
        b = float(value)
    except (TypeError, ValueError):
        raise ConfigError(where, f"{str(value)[:40]!r} is not a number of units") from None
    if not (math.isfinite(b) and b > 0):
        raise ConfigError(where, f"must be a positive, finite number of normalised units, got {str(value)[:40]}")
    return b


def check_count(where: str, value, *, lo: int = 1, hi: int = MAX_COUNT) -> int:
    """An integer option within [lo, hi] (never coerced)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, f"expected an integer, got {value!r}")
    if value < lo:
        raise ConfigError(where, f"must be at least {lo}, got {value}")
    if value > hi:
        raise ConfigError(where, f"must be at most {hi:,}, got {value:,}")
    return value


def available_memory() -> int:
    """Bytes this process can still use: MemAvailable (Linux), else physical memory; and the
    address-space limit where one is set."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 8 << 30
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            avail = min(avail, soft)
    except (ImportError, ValueError, OSError):
        pass
    return int(avail)


def check_replicates(where: str, replicates, *, questions: int, per_pass: int = 1, configs: int = 1) -> int:
    """Replicates >= 1, and few enough that the replay's arrays fit in memory.

    The replay keeps three float64 arrays of [configurations in one pass x questions x
    replicates] (score, tokens, FLOPs) and one [configurations x replicates]; `per_pass` is the
    most configurations one compiled pass scores together (those that differ only in the last
    stage's count). A value over what fits is refused naming the most that does.
    """
    r = check_count(where, replicates, hi=2 ** 40)
    per_replicate = 8 * (3 * max(1, per_pass) * max(1, questions) + max(1, configs))
    need = per_replicate * r
    avail = available_memory() // 2  # room for the store, the interpreter and the rest
    if need > avail:
        most = max(1, avail // per_replicate)
        raise ConfigError(where, f"{r:,} replicates of {questions:,} question(s) need about {_size(need)} of memory; "
                          f"about {_size(avail)} can be used here: at most {most:,}")
    return r


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _first_existing(path: Path) -> Path:
    q = path.absolute()
    while not q.exists() and not q.is_symlink() and q != q.parent:
        q = q.parent
    return q


def _probe(folder: Path, shown: str, where: str) -> None:
    """Can a file be created in `folder`? (Permission bits say little to root; /proc says yes
    to access() and no to open(): try it.)"""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise InputError(where, f"{shown}: cannot write in {folder} ({e.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path, where: str) -> Path:
    """An output file that can be written: not an existing folder, its folder creatable and
    writable. Checked before any work, so that nothing is computed only to be lost."""
    p = Path(path)
    if p.is_dir():
        raise InputError(where, f"{path} is a folder; give a file name")
    base = _first_existing(p.parent)
    if not base.is_dir():
        raise InputError(where, f"{path}: {base} is not a folder")
    _probe(base, str(path), where)
    return p


def check_output_dir(path, where: str) -> Path:
    """An output folder that can be created or written: not an existing file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(where, f"{path} is a file, not a folder")
    base = _first_existing(p)
    if not base.is_dir():
        raise InputError(where, f"{path}: {base} is not a folder")
    _probe(base, str(path), where)
    return p


def plural(n: int, word: str, words: str | None = None) -> str:
    """`1 cell`, `2 cells` (`words`: an irregular plural)."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def pct(x: float, digits: int = 2) -> str:
    """A share as percent, without the sign."""
    return f"{100 * x:.{digits}f}"


def diff_json(d, vs: str) -> dict | None:
    """`replay compare --json`'s `diff` of one result against the first (None: not scored)."""
    if d is None:
        return None
    return {"vs": vs, "mean": d.mean, "ci_lo": d.lo, "ci_hi": d.hi, "ci_level": d.level, "ci_method": d.method,
            "beyond_noise": d.excludes(0.0)}


def compare_cells(r, base, d) -> tuple[str, str, str, str, str, str]:
    """`replay compare`'s text cells of one result (chain or graph): score, replicate error,
    question interval, the paired difference against the first, its interval, beyond noise."""
    if r.feasible:
        score, err, ci = f"{100 * r.score:7.2f}", f"{100 * r.stderr:6.2f}", f"[{pct(r.ci_lo)}, {pct(r.ci_hi)}]"
    else:
        score, err, ci = "infeas.", "", "over the budget"
    if r is base:
        dd, dci, beyond = "(reference)", "", ""
    elif d is None:
        dd, dci, beyond = "-", "", "(infeasible)"
    else:
        dd, dci = f"{100 * d.mean:+.2f}", f"[{100 * d.lo:+.2f}, {100 * d.hi:+.2f}]"
        beyond = "yes" if d.excludes(0.0) else "no"
    return score, err, ci, dd, dci, beyond


def uncertainty_legend(results) -> str:
    """The line that names a table's two uncertainties (replay/stats.py): the replicate error and
    the 95% interval over questions, for results with `feasible`, `interval()`, `replicates` and
    `n_questions` (chain or graph results)."""
    r = next((x for x in results if x.feasible), results[0])
    ci = r.interval() if r.feasible else None
    how = ("Wilson interval at the effective number of questions" if ci is None or ci.method == "wilson-neff"
           else "Student-t interval")
    return (f"±rep: the replicate error (standard error over the {r.replicates} replicates, these questions fixed); "
            f"95% CI: the interval over the {r.n_questions} questions ({how}, replay/stats.py): "
            "what the score may be on new questions")
