"""Health and Prometheus metrics (no key needed: they say nothing about animals)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text

from reid import __version__
from serve.deps import State
from serve.problems import Problem, responses
from serve.schemas import HealthOut

router = APIRouter(tags=["service"])


@router.get("/v1/health", response_model=HealthOut, responses=responses(503))
def health(state: State) -> HealthOut:
    """Ready when the registry answers; says whether matching is available."""
    try:
        with state.registry.engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as e:
        raise Problem(503, f"the registry does not answer: {type(e).__name__}") from None
    m = state.matcher
    return HealthOut(
        status="ok",
        matching=m is not None,
        gallery_vectors=0 if m is None else len(m.index),
        model_version=None if m is None else m.model_version,
        version=__version__,
    )


PROMETHEUS = {200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}}


@router.get("/metrics", response_class=Response, responses=PROMETHEUS)
def metrics(state: State) -> Response:
    """Prometheus metrics of this process."""
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)
