"""The whole chain on demand: crawl → retrain → evaluate and promote, as subflows of one run."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow
from pydantic import BaseModel, Field

from flows.crawl import CrawlParameters, crawl_flow
from flows.promote import EvaluatePromoteParameters, evaluate_promote_flow
from flows.retrain import RetrainParameters, retrain_flow


class PipelineParameters(BaseModel):
    """What the pipeline deployment's form asks for: each stage's own parameters."""

    crawl: CrawlParameters = Field(default_factory=CrawlParameters, description="The crawl stage.")
    retrain: RetrainParameters = Field(default_factory=RetrainParameters, description="The training stage.")
    promotion: EvaluatePromoteParameters = Field(
        default_factory=EvaluatePromoteParameters, description="The gate (the version is the one just trained)."
    )


@flow(name="pipeline", log_prints=True)
async def pipeline_flow(params: PipelineParameters = PipelineParameters()) -> dict[str, Any]:
    """Crawl, train a candidate on the fresh snapshot, gate it and promote it when it passes."""
    # The stages hand over directly: no events, so the triggered deployments stay out of this run,
    # and the crawl writes the store itself so that training sees its lists.
    figures = await crawl_flow(params.crawl.model_copy(update={"announce": False, "spool": False}))
    trained = retrain_flow(params.retrain.model_copy(update={"announce": False}))
    if trained.get("skipped"):
        return {"crawl": figures, "retrain": trained, "promotion": None}
    gate = params.promotion.model_copy(update={"version": trained["model_version"]})
    promotion = evaluate_promote_flow(gate)
    return {"crawl": figures, "retrain": trained, "promotion": promotion}


if __name__ == "__main__":
    asyncio.run(pipeline_flow())
