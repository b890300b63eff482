"""Pipeline specs: a chosen allocation exported so that it can be run on new questions
(`replay export`, `search export`; run by `collect live --spec`). Format: docs/spec-format.md."""

from .export import frontier_point, spec_from_config, spec_from_frontier, spec_from_summary
from .format import (SPEC_FORMAT, SPEC_VERSION, Origin, PipelineSpec, Prompts, ReplayEstimate, Sampling, SpecNode,
                     SpecStage, read_spec, write_spec)

__all__ = ["SPEC_FORMAT", "SPEC_VERSION", "PipelineSpec", "SpecStage", "SpecNode", "Sampling", "Prompts", "Origin",
           "ReplayEstimate", "read_spec", "write_spec", "spec_from_config", "spec_from_summary", "spec_from_frontier",
           "frontier_point"]
