"""Simulated multi-stage stores: `collect simulate SPEC --out STORE`.

A spec (YAML/JSON, docs/simulate.md) describes questions, models, stages and how they chain;
`simulate(spec, out, seed)` writes a store in the normal format, marked synthetic, named
`sim-...`, with the spec and seed in its provenance.
"""

from .generate import simulate
from .spec import SimSpec, SpecError, load_spec, spec_from_dict

__all__ = ["simulate", "SimSpec", "SpecError", "load_spec", "spec_from_dict"]
