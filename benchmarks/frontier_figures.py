"""The frontier of every shipped store (traces/*), as the README shows it, and what it costs.

    python benchmarks/frontier_figures.py                  # every store -> docs/figures/frontier/
    python benchmarks/frontier_figures.py aime24 sim-2wiki # some of them

Per store: `search.frontier.chain_frontier` (chain stores: every configuration, the exact scan)
or `graph_frontier` (graph stores: every graph of up to 2 nodes, 8 samples a node), 12
log-spaced budgets, 16 replicates, seed 0, the store's train/test split, the train pick by the
default selection rule (search/selection.py DEFAULT_RULE, as `replay frontier`); the figure as
`replay frontier` draws it, then reduced to a 256-colour palette (a few tens of KB) for the
repository. Prints one line per store: configurations scored, the scan's wall and CPU time
(both question sets), the selection rule's CPU time, the whole command's, and the machine's
load, so that wall times measured on a busy machine can be read. The numbers in the README come from this script.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import replay  # noqa: E402
from search.frontier import chain_frontier, graph_frontier  # noqa: E402
from search.frontier.plots import plot_frontier  # noqa: E402


def shrink(path: Path) -> None:
    """A palette PNG of the figure (flat colours: no visible loss), in place."""
    from PIL import Image

    img = Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp, optimize=True)
    os.replace(tmp, path)


def main(names: list[str]) -> None:
    out = ROOT / "docs" / "figures" / "frontier"
    out.mkdir(parents=True, exist_ok=True)
    stores = names or sorted(p.name for p in (ROOT / "traces").iterdir() if (p / "manifest.json").is_file())
    print(f"{'store':<18}{'kind':<7}{'scored':>10}{'scan wall s':>13}{'scan CPU s':>12}{'select CPU s':>14}"
          f"{'total wall s':>14}{'load (1 min)':>14}")
    for name in stores:
        t0 = time.perf_counter()
        st = replay.open(ROOT / "traces" / name)
        if st.manifest.kind == "graph":
            fr = graph_frontier(st, replicates=16, seed=0)
        else:
            fr = chain_frontier(st, replicates=16, seed=0)
        png = out / f"{name}.png"
        plot_frontier(fr, png)
        shrink(png)
        if name == "aime24":
            from replay.frontier_cli import frontier_text

            (out / "aime24.txt").write_text(frontier_text(fr, limit=None) + "\n", encoding="utf-8")
        i = fr.info
        print(f"{name:<18}{i['kind']:<7}{i['scanned']:>10,}{i['scan_wall_s']:>13.2f}{i['scan_cpu_s']:>12.2f}"
              f"{i['select_cpu_s']:>14.2f}{time.perf_counter() - t0:>14.2f}{os.getloadavg()[0]:>14.1f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
