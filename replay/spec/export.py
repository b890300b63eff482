"""Export a chosen allocation as a pipeline spec: from a configuration, a search summary
(`summary.json` of `search run`) or a frontier point (`replay frontier`'s Parquet).

    spec = spec_from_config(store, "SmolLM2-135M-Instruct:4,gemma-3-270m:2")
    spec = spec_from_summary("out/bo/summary.json")
    spec = spec_from_frontier(store, "frontier.parquet", budget=2.0)

Everything the spec says about the pipeline is read off the store's manifest: the stages and
their aggregations, each model's backend id and prompt style, the task and the sampling
settings of the collection. What the store does not record is said in the spec's `notes`,
never filled in silently: a synthetic or imported store names no task (the spec's task is null
and `collect live` refuses it until one is set); no store records the prompt text (the prompts
are the task's code, named in `prompts.source`); a store that records no prompt styles was
collected with chat prompts (`collect run`'s default), which the spec states.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import InputError
from .format import Origin, PipelineSpec, Prompts, ReplayEstimate, Sampling, SpecNode, SpecStage

EXPORTABLE_SPACES = ("config", "graph")  # a controller or program is a policy, not a fixed allocation
DEFAULT_TEMPERATURE, DEFAULT_MAX_TOKENS = 0.9, 1024  # `collect run`'s defaults


def spec_from_config(store, config, *, chosen_from: str = "config", detail: dict | None = None,
                     replicates: int = 1000, seed: int = 0, questions: str | None = None) -> PipelineSpec:
    """The spec of one configuration (chain) or graph on `store`.

    Parameters
    ----------
    store:
        A `replay.Store`.
    config:
        The allocation: replay's text form ('M:S,M:S'; a graph's statements or JSON on a graph
        store), a `Config` or a `Graph`.
    chosen_from:
        How it was chosen, in words ("config", "search summary", "frontier"); recorded in `origin`.
    detail:
        More about the choice (the summary file, the frontier budget ...), recorded in `origin.detail`.
    replicates, seed:
        The replay draws for the spec's `replay` estimate.
    questions:
        The questions of the estimate: a split name or None (the test split when the store has
        one, else all questions).
    """
    graph = _is_graph(store, config)
    prov = store.manifest.provenance or {}
    src = prov.get("source") if isinstance(prov.get("source"), dict) else {}
    task = src.get("task") if isinstance(src.get("task"), str) else None
    model_ids = {m.get("name"): m.get("model_id") for m in prov.get("models", []) if isinstance(m, dict)}
    backend = prov.get("backend") if isinstance(prov.get("backend"), dict) else {}
    styles = backend.get("prompt_styles") if isinstance(backend.get("prompt_styles"), dict) else None
    sampling = prov.get("sampling") if isinstance(prov.get("sampling"), dict) else {}
    aggs = {s.name: s.aggregation for s in store.manifest.stages}
    notes: list[str] = []

    def model_id(name: str) -> str:
        mid = model_ids.get(name)
        return mid if isinstance(mid, str) and mid else name

    def style(name: str) -> str:
        return (styles or {}).get(name, "chat")

    if store.manifest.synthetic:
        notes.append("The store is synthetic (simulated outputs): its models and scores are invented, it names no "
                     "task, and its model names are no real model ids. Set task and each model_id before "
                     "running this spec.")
    elif task is None:
        notes.append("The store names no collect task (it was imported, not collected by `collect run`): set "
                     "task to the collect task that matches its stages, and check each model_id, before running.")
    if any(m not in model_ids for m in _models(store, config, graph)) and not store.manifest.synthetic:
        notes.append("The store records no backend id for some models: their model_id is the store's model name.")
    if task is not None and styles is None:
        notes.append("The store records no prompt styles: it was collected with chat prompts (collect run's "
                     "default), so every prompt_style is chat.")
    temperature, max_tokens = sampling.get("temperature"), sampling.get("max_tokens")
    if not (_number(temperature) and temperature >= 0 and _number(max_tokens) and int(max_tokens) == max_tokens >= 1):
        temperature, max_tokens = DEFAULT_TEMPERATURE, DEFAULT_MAX_TOKENS
        notes.append(f"The store records no sampling settings (temperature, max_tokens): temperature "
                     f"{DEFAULT_TEMPERATURE} and max_tokens {DEFAULT_MAX_TOKENS} are collect run's defaults, not "
                     "what its outputs were drawn with.")

    if graph:
        g = _as_graph(store, config)
        nodes = tuple(SpecNode(name=n.name, role=n.role, model=n.model, model_id=model_id(n.model), samples=n.samples,
                               aggregation=aggs.get(n.role, "majority_vote"), inputs=tuple(n.inputs),
                               prompt_style=style(n.model)) for n in g.nodes)
        stages, output, text = (), tuple(g.output), str(g)
    else:
        from ..config import as_config

        cfg = as_config(store, config)
        stages = tuple(SpecStage(name=st.name, model=ch.model, model_id=model_id(ch.model), samples=ch.samples,
                                 aggregation=st.aggregation, prompt_style=style(ch.model))
                       for st, ch in zip(store.manifest.stages, cfg.stages))
        nodes, output, text = (), (), str(cfg)
    tools = prov.get("tools") if isinstance(prov.get("tools"), dict) else {}
    version = tools.get("tts-replay")
    if task is not None:
        where = f"graph roles of collect task {task!r} (Task.prompt for solve, Task.role_prompt for refine and " \
                "aggregate)" if graph else f"collect task {task!r} (Task.prompt for chat, Task.completion_prompt for " \
                "completion)"
        source = f"task defaults: the {where}; the store records the task and each model's prompt style, not the text"
    else:
        source = "unknown: the store names no task, so no prompts; the task set in this spec supplies them"
    prompts = Prompts(text_recorded=False, source=source,
                      collected_with=f"tts-replay {version}" if isinstance(version, str) else None)
    origin = Origin(store=store.name, store_path=str(store.path), synthetic=bool(store.manifest.synthetic),
                    chosen_from=chosen_from, config=text, detail=dict(detail or {}))
    return PipelineSpec(kind="graph" if graph else "chain", task=task, stages=stages, nodes=nodes, output=output,
                        sampling=Sampling(temperature=float(temperature), max_tokens=int(max_tokens)),
                        prompts=prompts, origin=origin,
                        replay=_estimate(store, config, graph, replicates=replicates, seed=seed, questions=questions),
                        notes=tuple(notes))


def spec_from_summary(path: str | Path, *, store: str | Path | None = None, replicates: int = 1000,
                      seed: int = 0) -> PipelineSpec:
    """The spec of the allocation a search picked (`summary.json`'s `best`).

    Parameters
    ----------
    path:
        A `summary.json` written by `search run` (or a sweep cell).
    store:
        The store, when it is no longer at the path the summary recorded.
    replicates, seed:
        The replay draws for the spec's `replay` estimate.
    """
    from ..store import open_store

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(where, "no such summary file")
    try:
        s = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(where, f"not a search summary (cannot read it as JSON: {e})") from None
    if isinstance(s, dict) and "summaries" in s and "best" not in s:
        raise InputError(where, "is the summary of several seeds (search run --seeds); export one seed's "
                                "seed-S/summary.json")
    if not isinstance(s, dict) or "best" not in s or "space_kind" not in s:
        raise InputError(where, "not a search summary (no 'best' and 'space_kind'; expected summary.json of search run)")
    kind = s.get("space_kind")
    if kind not in EXPORTABLE_SPACES:
        raise InputError(where, f"a {kind} search picks a policy that decides per question, not a fixed allocation; "
                                f"only configuration and graph searches export ({', '.join(EXPORTABLE_SPACES)})")
    best = s.get("best")
    if not isinstance(best, dict) or not isinstance(best.get("config"), str):
        raise InputError(where, "the search picked no allocation (best is null: no feasible trial)")
    store_path = store if store is not None else s.get("store")
    if not store_path:
        raise InputError(where, "records no store path; pass --store")
    if store is None and not Path(store_path).exists():
        raise InputError(where, f"its store {store_path} is not there; pass --store with its current path")
    st = open_store(store_path)
    if s.get("store_name") and st.name != s["store_name"]:
        raise InputError(str(store_path), f"is store {st.name!r}, but the summary is of {s['store_name']!r}")
    detail = {"summary": str(path), "searcher": s.get("searcher"), "seed": s.get("seed"), "budget": s.get("budget"),
              "cost_unit": s.get("cost_unit"), "train_score": best.get("train_score")}
    test = s.get("test")
    if isinstance(test, dict) and test.get("score") is not None:
        detail["test_score"] = test.get("score")
    config = best["config"]
    if kind == "graph":  # a graph search may run on a chain store (its stages as roles): the pick is a graph
        from ..graph.config import as_graph

        config = as_graph(st, config)
    return spec_from_config(st, config, chosen_from="search summary", detail=detail, replicates=replicates, seed=seed)


def frontier_point(path: str | Path, budget: float, *, split: str | None = None) -> dict[str, Any]:
    """The frontier row for `budget`: among rows of `split`, the one at the largest grid budget
    not above `budget` (the best allocation that budget affords). Columns read: budget, config,
    split.

    Raises:
        InputError: no such file, a missing column, no row at or under the budget, an unknown
            split, several splits and none chosen, or several configurations at one budget.
    """
    import polars as pl

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(where, "no such frontier file")
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise InputError("--budget", f"must be a positive number, got {budget!r}")
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # polars raises several kinds for a file that is not Parquet
        raise InputError(where, f"not a Parquet file ({type(e).__name__})") from None
    missing = [c for c in ("budget", "config", "split") if c not in df.columns]
    if missing:
        raise InputError(where, f"no column {missing[0]!r} (a frontier has budget, config and split)")
    splits = sorted(str(x) for x in df["split"].drop_nulls().unique())
    if split is None:
        if len(splits) == 1:
            split = splits[0]
        elif "train" in splits:
            split = "train"  # the picks chosen on train: what a user can take away without looking at test
        else:
            raise InputError(where, f"holds splits {', '.join(splits)}; choose one with --split")
    elif split not in splits:
        raise InputError("--split", f"{split!r} is not a split of {where} ({', '.join(splits) or 'none'})")
    rows = df.filter((pl.col("split") == split) & pl.col("budget").is_not_null() & (pl.col("budget") <= budget * (1 + 1e-9)))
    if rows.height == 0:
        low = df.filter(pl.col("split") == split)["budget"].min()
        raise InputError("--budget", f"{budget:g} is under the smallest budget of the frontier ({low:g})")
    at = rows["budget"].max()
    rows = rows.filter(pl.col("budget") == at)
    configs = sorted({c for c in rows["config"].to_list()}, key=lambda c: (c is None, str(c)))
    if configs == [None]:
        raise InputError("--budget", f"the frontier has no feasible allocation at budget {at:g} (split {split})")
    configs = [c for c in configs if c is not None]
    if len(configs) > 1:
        raise InputError(where, f"holds {len(configs)} configurations at budget {at:g} (split {split}): "
                                f"{configs[0]!r}, {configs[1]!r}")
    return {"frontier": str(path), "budget": float(at), "asked_budget": float(budget), "split": split,
            "config": configs[0]}


def spec_from_frontier(store, path: str | Path, budget: float, *, split: str | None = None, replicates: int = 1000,
                       seed: int = 0) -> PipelineSpec:
    """The spec of the frontier's allocation at `budget` on `store`.

    Parameters
    ----------
    store:
        The `replay.Store` the frontier was computed on.
    path:
        The frontier Parquet (`replay frontier`): columns budget, config (replay's text form),
        split.
    budget:
        The budget; the point at the largest grid budget not above it (`frontier_point`).
    split:
        Which split's picks (default: the only one, else train).
    replicates, seed:
        The replay draws for the spec's `replay` estimate.
    """
    point = frontier_point(path, budget, split=split)
    return spec_from_config(store, point.pop("config"), chosen_from="frontier", detail=point,
                            replicates=replicates, seed=seed)


# ---- helpers

def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_graph(store, config) -> bool:
    from ..graph.config import Graph

    return isinstance(config, Graph) or store.manifest.kind == "graph"


def _as_graph(store, config):
    from ..graph.config import as_graph

    return as_graph(store, config)


def _models(store, config, graph: bool) -> list[str]:
    if graph:
        return [n.model for n in _as_graph(store, config).nodes]
    from ..config import as_config

    return [c.model for c in as_config(store, config).stages]


def _estimate(store, config, graph: bool, *, replicates: int, seed: int, questions) -> ReplayEstimate:
    test = store.manifest.split.get("test") or ()
    if questions is None:
        questions = "test" if test else None
    qidx = store.question_indices(questions)
    label = f"{questions or 'all'} ({len(qidx)} questions of {store.name})"
    if graph:
        from ..graph.engine import evaluate_graph

        r = evaluate_graph(store, _as_graph(store, config), questions=questions, replicates=replicates, seed=seed)
    else:
        from ..engine import evaluate

        r = evaluate(store, config, questions=questions, replicates=replicates, seed=seed)
    return ReplayEstimate(questions=label, n_questions=int(len(qidx)), score=float(r.score), ci_lo=float(r.ci_lo),
                          ci_hi=float(r.ci_hi), tokens_per_question=float(r.tokens), units_per_question=float(r.units))


__all__ = ["spec_from_config", "spec_from_summary", "spec_from_frontier", "frontier_point"]
