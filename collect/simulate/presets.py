"""Preset specs that mirror the shapes of the real tasks (docs/simulate.md describes each).

They are plain dicts in the spec's YAML/JSON form, so `collect simulate 2wiki` and a YAML file
with the same content make the same store. Abilities and sensitivities are logits chosen so
that scores land near the paper's (2Wiki EM ~0.6-0.7, TaskBench p-F1 ~0.5, ChatDev ~0.75) and
so that the three behaviours of the design show: retrieval-like stages that read long inputs
prefer large models, short-input stages prefer small models sampled many times, fused stages
peak at an interior sample count, and downstream stages need more samples after a poor
upstream answer. They are synthetic shapes, not measurements of those models.
"""

from __future__ import annotations

import copy
from typing import Any

from .spec import SimSpec, SpecError, spec_from_dict

# Nominal parameter counts of the families the paper uses.
LLAMA = [
    {"name": "Llama-3.2-3B", "params": 3.2e9, "ability": 0.3, "long_input_sensitivity": 0.8},
    {"name": "Llama-3.1-8B", "params": 8.0e9, "ability": 0.8, "long_input_sensitivity": 0.45},
    {"name": "Llama-3.3-70B", "params": 70.6e9, "ability": 1.6, "long_input_sensitivity": 0.1},
]
QWEN = [
    {"name": "Qwen2.5-3B", "params": 3.1e9, "ability": 0.3, "long_input_sensitivity": 0.7},
    {"name": "Qwen2.5-7B", "params": 7.6e9, "ability": 0.8, "long_input_sensitivity": 0.4},
    {"name": "Qwen2.5-14B", "params": 14.7e9, "ability": 1.2, "long_input_sensitivity": 0.25},
    {"name": "Qwen2.5-72B", "params": 72.7e9, "ability": 1.8, "long_input_sensitivity": 0.08},
]


def _qa(name: str, description: str, difficulty: float, fuse: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "name": "answer", "description": "answer the question from the retrieved evidence (exact match)",
        "prompt_tokens": 450, "completion_tokens": 40, "chain_penalty": 2.0, "concentration": 1.5,
    }
    if fuse:
        answer.update(aggregation="llm_fuse", fuse={"max_size": 12, "per_size": 3, "decay": 0.12})
    return {
        "name": name, "description": description, "questions": 150, "train_fraction": 1 / 3, "samples": 48,
        "keys_per_question": 4, "difficulty": {"mean": difficulty},
        "models": copy.deepcopy(LLAMA),
        "stages": [
            {"name": "retrieve", "description": "read the retrieved passages and name the bridge evidence",
             "prompt_tokens": 3500, "completion_tokens": 80, "concentration": 0.5},
            answer,
        ],
    }


def _kg(name: str, description: str, difficulty: float, set_vote: bool) -> dict[str, Any]:
    retrieve: dict[str, Any] = {
        "name": "kg_retrieve", "description": "choose the relation path(s) to follow in the knowledge graph",
        "prompt_tokens": 2500, "completion_tokens": 120, "concentration": 0.6,
    }
    if set_vote:
        retrieve.update(aggregation="set_vote", scorer="item_f1",
                        items={"catalog": 30, "gold_min": 1, "gold_max": 3, "distractors": 3, "spurious": 1.0})
    return {
        "name": name, "description": description, "questions": 150, "train_fraction": 1 / 3, "samples": 48,
        "keys_per_question": 6 if set_vote else 4, "difficulty": {"mean": difficulty},
        "models": copy.deepcopy(LLAMA),
        "stages": [
            retrieve,
            {"name": "answer", "description": "answer from the retrieved triples (exact match)",
             "prompt_tokens": 600, "completion_tokens": 30, "chain_penalty": 2.2, "concentration": 1.5},
        ],
    }


PRESETS: dict[str, dict[str, Any]] = {
    "2wiki": _qa("sim-2wiki", "2WikiMultiHopQA shape: long-context retrieval, then short QA", -0.3, fuse=False),
    "hotpotqa": _qa("sim-hotpotqa", "HotpotQA shape: long-context retrieval, then QA fused by an LLM", -0.5, fuse=True),
    "cwq": _kg("sim-cwq", "ComplexWebQuestions shape: KG relation retrieval (list), then answer", -0.2, set_vote=True),
    "webqsp": _kg("sim-webqsp", "WebQSP shape: KG relation retrieval, then answer", -0.9, set_vote=False),
    "taskbench": {
        "name": "sim-taskbench",
        "description": "TaskBench shape: decompose the request, select tools (list), fill parameters (list, p-F1)",
        "questions": 120, "train_fraction": 5 / 12, "samples": 32, "keys_per_question": 6,
        "difficulty": {"mean": 0.2},
        "models": copy.deepcopy(QWEN),
        "stages": [
            {"name": "decompose", "description": "split the request into subtasks (canonical plan)",
             "prompt_tokens": 700, "completion_tokens": 160, "concentration": 0.8},
            {"name": "tools", "aggregation": "set_vote", "description": "pick the tools the plan calls",
             "prompt_tokens": 1800, "completion_tokens": 60, "chain_penalty": 1.2,
             "items": {"catalog": 40, "gold_min": 1, "gold_max": 4, "distractors": 4, "spurious": 1.2}},
            {"name": "params", "aggregation": "set_vote", "scorer": "item_f1 (p-F1)",
             "description": "fill each tool's parameters (name=value items)",
             "prompt_tokens": 900, "completion_tokens": 120, "chain_penalty": 1.5,
             "items": {"catalog": 60, "gold_min": 2, "gold_max": 6, "distractors": 5, "spurious": 1.5}},
        ],
    },
    "chatdev": {
        "name": "sim-chatdev",
        "description": "ChatDev shape: design, code (fused by an LLM), test; scored by consistency",
        "questions": 100, "train_fraction": 0.5, "samples": 24, "keys_per_question": 3,
        "difficulty": {"mean": -0.4},
        "answers": {"partial_credit": 0.7},
        "models": copy.deepcopy(QWEN),
        "stages": [
            {"name": "design", "description": "write the design document (canonical design choice)",
             "prompt_tokens": 900, "completion_tokens": 400, "concentration": 1.0},
            {"name": "code", "aggregation": "llm_fuse", "description": "write the code; candidates merged by the model",
             "prompt_tokens": 1600, "completion_tokens": 900, "chain_penalty": 1.5,
             "fuse": {"max_size": 8, "per_size": 3, "decay": 0.15, "prompt_tokens": 250}},
            {"name": "test", "description": "review and test the program; score = consistency with the request",
             "prompt_tokens": 2600, "completion_tokens": 300, "chain_penalty": 1.5},
        ],
    },
    # The benchmark shape of the issue: 500 questions x 3 stages x 6 models x 128 samples.
    "scale": {
        "name": "sim-scale",
        "description": "benchmark shape: 500 questions, 3 chained stages, 6 models, 128 samples per pool",
        "questions": 500, "train_fraction": 0.1, "samples": 128, "keys_per_question": 4,
        "models": copy.deepcopy(LLAMA) + [
            {"name": "Qwen2.5-3B", "params": 3.1e9, "ability": 0.3, "long_input_sensitivity": 0.7},
            {"name": "Qwen2.5-7B", "params": 7.6e9, "ability": 0.8, "long_input_sensitivity": 0.4},
            {"name": "Qwen2.5-72B", "params": 72.7e9, "ability": 1.8, "long_input_sensitivity": 0.08},
        ],
        "stages": [
            {"name": "retrieve", "prompt_tokens": 3000, "completion_tokens": 80, "concentration": 0.5},
            {"name": "reason", "prompt_tokens": 800, "completion_tokens": 200, "chain_penalty": 1.5},
            {"name": "answer", "prompt_tokens": 400, "completion_tokens": 40, "chain_penalty": 2.0,
             "concentration": 1.5},
        ],
    },
}


# Graph stores (collaboration graphs, arXiv 2511.00086) in the shapes of the paper's tasks: two
# model families of three sizes each. Synthetic shapes chosen so that the behaviours the paper
# reports show (docs/simulate.md, "Graph stores"): the task picks the family (MATH and HumanEval
# favour the Qwen shapes, MMLU the Llama ones), refiners repair or break depending on size and
# family, aggregators pick out the right answer depending on the model, width helps then
# saturates, depth helps then hurts. Not measurements of those models.
_LLAMA_G = [("Llama-3.2-1B", 1.24e9, "llama", 30000.0, 220.0), ("Llama-3.2-3B", 3.21e9, "llama", 15000.0, 140.0),
            ("Llama-3.1-8B", 8.03e9, "llama", 7000.0, 85.0)]
_QWEN_G = [("Qwen2.5-1.5B", 1.54e9, "qwen", 26000.0, 200.0), ("Qwen2.5-3B", 3.09e9, "qwen", 15000.0, 140.0),
           ("Qwen2.5-7B", 7.62e9, "qwen", 7500.0, 90.0)]


def _graph_models(table: dict[str, tuple[float, float, float, float]]) -> list[dict[str, Any]]:
    """Models from (ability, repair, breaks, choose) per name, in family order."""
    out = []
    for name, params, family, prefill, decode in _LLAMA_G + _QWEN_G:
        ability, repair, breaks, choose = table[name]
        out.append({"name": name, "params": params, "family": family, "ability": ability, "repair": repair,
                    "breaks": breaks, "choose": choose, "prefill_tokens_per_s": prefill,
                    "decode_tokens_per_s": decode})
    return out


GRAPH_PRESETS: dict[str, dict[str, Any]] = {
    "math": {
        "name": "sim-math", "kind": "graph",
        "description": "MATH shape: free-form numeric answers; the Qwen shapes solve and refine better; "
                       "refinement repairs then drifts into the trap",
        "questions": 150, "samples": 32, "role_samples": 4, "top_answers": 4,
        "refine_max_inputs": 2, "aggregate_max_inputs": 4,
        "answers": {"style": "number", "wrong": 3, "concentration": 0.3, "rare": 4, "rare_share": 0.06},
        "difficulty": {"mean": 0.3, "sd": 1.3, "model_sd": 0.4},
        "refine": {"stickiness": 0.9, "break_difficulty": 0.3, "keep": 0.85},
        "aggregate": {"share_bonus": 1.5, "confusion": 0.2, "fresh_penalty": 1.5, "noise": 0.03},
        "solve_tokens": {"prompt": 250, "completion": 450},
        "refine_tokens": {"prompt": 300, "per_input": 450, "completion": 400},
        "aggregate_tokens": {"prompt": 300, "per_input": 450, "completion": 200},
        "models": _graph_models({
            "Llama-3.2-1B": (-1.6, -2.0, -0.8, -1.2), "Llama-3.2-3B": (-0.4, -0.8, -1.6, -0.2),
            "Llama-3.1-8B": (0.3, 0.6, -1.7, 0.6),
            "Qwen2.5-1.5B": (-0.3, -0.8, -1.4, -0.5), "Qwen2.5-3B": (0.4, 0.2, -1.8, 0.3),
            "Qwen2.5-7B": (1.2, 1.5, -1.7, 1.0)}),
    },
    "mmlu": {
        "name": "sim-mmlu", "kind": "graph",
        "description": "MMLU shape: four choices (letters); the Llama shapes know more; refiners rarely repair "
                       "and often talk themselves out of a right choice; aggregation helps",
        "questions": 150, "samples": 32, "role_samples": 4, "top_answers": 4,
        "refine_max_inputs": 2, "aggregate_max_inputs": 4,
        "answers": {"style": "letter", "wrong": 2, "concentration": 0.7, "rare": 0, "overthought_share": 0.2},
        "difficulty": {"mean": -0.2, "sd": 1.4, "model_sd": 0.5},
        "refine": {"stickiness": 0.7, "break_difficulty": 0.4, "keep": 0.85},
        "aggregate": {"share_bonus": 1.2, "confusion": 0.3, "fresh_penalty": 1.0, "noise": 0.02},
        "solve_tokens": {"prompt": 180, "completion": 160},
        "refine_tokens": {"prompt": 220, "per_input": 160, "completion": 150},
        "aggregate_tokens": {"prompt": 220, "per_input": 160, "completion": 80},
        "models": _graph_models({
            "Llama-3.2-1B": (-0.7, -2.2, -0.9, -0.8), "Llama-3.2-3B": (0.5, -1.6, -1.4, 0.4),
            "Llama-3.1-8B": (1.4, 0.4, -2.2, 1.4),
            "Qwen2.5-1.5B": (-0.2, -2.0, -1.0, -0.6), "Qwen2.5-3B": (0.4, -1.6, -1.3, 0.2),
            "Qwen2.5-7B": (1.0, -0.6, -1.6, 0.9)}),
    },
    "humaneval": {
        "name": "sim-humaneval", "kind": "graph",
        "description": "HumanEval shape: programs keyed by their pass/fail signature on the tests; the Qwen "
                       "(coder) shapes write better code; large refiners debug, small ones break working code",
        "questions": 150, "samples": 32, "role_samples": 4, "top_answers": 4,
        "refine_max_inputs": 2, "aggregate_max_inputs": 4, "scorer": "pass@1 (all tests pass)",
        "answers": {"style": "signature", "tests": 6, "wrong": 3, "concentration": 0.3, "rare": 6,
                    "rare_share": 0.06},
        "difficulty": {"mean": 0.2, "sd": 1.5, "model_sd": 0.5},
        "refine": {"stickiness": 0.75, "break_difficulty": 0.3, "keep": 0.8},
        "aggregate": {"share_bonus": 1.0, "confusion": 0.25, "fresh_penalty": 1.8, "noise": 0.03},
        "solve_tokens": {"prompt": 200, "completion": 260},
        "refine_tokens": {"prompt": 260, "per_input": 260, "completion": 280},
        "aggregate_tokens": {"prompt": 260, "per_input": 260, "completion": 120},
        "models": _graph_models({
            "Llama-3.2-1B": (-1.5, -2.2, -0.6, -1.2), "Llama-3.2-3B": (-0.6, -1.2, -1.2, -0.4),
            "Llama-3.1-8B": (0.2, 0.2, -2.2, 0.3),
            "Qwen2.5-1.5B": (-0.7, -1.4, -1.0, -0.7), "Qwen2.5-3B": (0.1, -0.4, -1.6, 0.1),
            "Qwen2.5-7B": (0.9, 1.3, -1.6, 0.8)}),
    },
}


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS) + tuple(GRAPH_PRESETS)


def preset_dict(name: str) -> dict[str, Any]:
    if name in GRAPH_PRESETS:
        return copy.deepcopy(GRAPH_PRESETS[name])
    if name not in PRESETS:
        raise SpecError(f"preset {name!r}", f"unknown preset (presets: {', '.join(preset_names())})")
    return copy.deepcopy(PRESETS[name])


def spec_of(raw: Any, where: str):
    """A chain spec (SimSpec) or, for `kind: graph`, a graph spec (GraphSimSpec)."""
    from .graph import graph_spec_from_dict, is_graph_spec

    return graph_spec_from_dict(raw, where) if is_graph_spec(raw) else spec_from_dict(raw, where)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Overlay a spec file on a preset: mappings merge key by key, anything else replaces.
    Lists (models, stages) replace as a whole: a partial list would be ambiguous."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def preset(name: str):
    return spec_of(preset_dict(name), f"preset {name!r}")


def resolve(spec_arg: str | None, preset_name: str | None) -> tuple[SimSpec, str | None]:
    """What `collect simulate SPEC [--preset NAME]` means: SPEC a file or a preset name;
    with --preset, the file's fields are laid over that preset."""
    from pathlib import Path

    from .spec import read_spec_file

    if spec_arg is None and preset_name is None:
        raise SpecError("SPEC", f"give a spec file or a preset name ({', '.join(preset_names())})")
    if spec_arg is not None and not Path(spec_arg).exists():
        if spec_arg in preset_names() and preset_name is None:
            return preset(spec_arg), spec_arg
        raise SpecError(spec_arg, f"no such spec file, and not a preset name ({', '.join(preset_names())})")
    if spec_arg is None:
        return preset(preset_name), preset_name
    raw = read_spec_file(spec_arg)
    if preset_name is not None:
        if not isinstance(raw, dict):
            raise SpecError(spec_arg, "must be a mapping to lay over a preset")
        raw = merge(preset_dict(preset_name), raw)
    return spec_of(raw, spec_arg), preset_name
