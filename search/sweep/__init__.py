"""`search sweep`: a grid of ordinary searches, run in parallel, resumable, reported as one.

    search sweep benchmarks/sweeps/paper.yaml                 # worker processes (all cores)
    search sweep spec.yaml --workers 4 --out out/sweeps/x
    search sweep spec.yaml --ray auto                         # on a Ray cluster
    search sweep --stores traces/aime24 --searchers random,bo,rules --seeds 0-9 --train 5,10,20

The grid is stores x searchers (with ablations, `agenttts:insight1`) x seeds x training-set
sizes x budgets x trial budgets. Every cell is an ordinary search (search/runner.py:
`run_and_report`) with its own archive under OUT/cells/; a cell is finished when its
summary.json exists, a cell with an archive but no summary is continued with the archive's
resume machinery, so an interrupted sweep resumes without repeating or losing a cell. The
grid optimum of each objective (store, training size, budget) is computed once, by a task of
its own, and handed to every cell of that objective.

Execution: in this process (`--workers 1`), in spawned worker processes (default: one per
core; one Numba thread each), or on Ray (`--ray ADDRESS|auto|local`: one Ray task per cell,
`ray.wait` for progress). Workers open each store once and keep it; stores are read from their
path, never shipped with a task. LLM searchers share `--llm-concurrency` request slots: a
Manager semaphore held around each HTTP request (search/llm/client.py) for worker processes;
with Ray, each LLM cell asks for the custom resource `llm_slot`.

Outputs (OUT): sweep.json (the spec as run), optima.json, cells/..., results.parquet (one row
per cell), curves.parquet (best-so-far per trial, long format), report.md and figures/*.png.
The spec format is documented in docs/search.md.

One module per job:

    spec.py       the spec: reading, checking, the SweepSpec
    plan.py       objectives and cells (one SearchSettings each), the output folder's fingerprint
    tasks.py      what a worker runs: a grid optimum, a cell
    executors.py  this process, worker processes, Ray
    run.py        run_sweep: plan, run, collect, report
    results.py    results.parquet and curves.parquet from the cells on disk
    report.py     report.md and figures
"""

from .plan import Cell, Group, Plan, plan_sweep
from .results import TIMING_COLUMNS, collect_results
from .run import SweepFailed, SweepResult, run_sweep
from .spec import SweepSpec, parse_spec, read_spec_file

__all__ = ["Cell", "Group", "Plan", "SweepFailed", "SweepResult", "SweepSpec", "TIMING_COLUMNS", "collect_results",
           "parse_spec", "plan_sweep", "read_spec_file", "run_sweep"]
