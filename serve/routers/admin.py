"""Sharing agreements and the audit log (organisation administrators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import or_, select

from reid.errors import ReidError
from reid.registry.access import AuditEntry, SharingAgreement
from serve.access import active_agreements, add_agreement, audit
from serve.deps import Admin, DbSession
from serve.problems import COMMON, Problem, responses
from serve.schemas import AgreementIn, AgreementOut, AuditOut

router = APIRouter(prefix="/v1", tags=["administration"])


def _out(a: SharingAgreement) -> AgreementOut:
    return AgreementOut(id=a.id, owner=a.owner.code, partner=a.partner.code,
                        share_match=a.share_match, share_sightings=a.share_sightings,
                        share_precise=a.share_precise, note=a.note, created_at=a.created_at)


@router.get("/agreements", response_model=list[AgreementOut], responses=responses(*COMMON))
def agreements(session: DbSession, caller: Admin) -> list[AgreementOut]:
    """Agreements in force that the caller's organisation gives or receives."""
    given = active_agreements(session, owner=caller.organisation)
    received = active_agreements(session, partner=caller.organisation)
    return [_out(a) for a in [*given, *received]]


@router.post("/agreements", response_model=AgreementOut, status_code=201,
             responses=responses(*COMMON, 404))  # fmt: skip
def share(body: AgreementIn, session: DbSession, caller: Admin) -> AgreementOut:
    """Share the caller's organisation's data with a partner (replaces an agreement in
    force between the two)."""
    try:
        row = add_agreement(
            session, caller.organisation, body.partner, share_match=body.share_match,
            share_sightings=body.share_sightings, share_precise=body.share_precise,
            created_by=caller.who, note=body.note,
        )  # fmt: skip
    except ReidError as e:
        raise Problem(422, str(e), field="partner") from None
    audit(session, caller, "agreement.create", f"agreement:{row.id}",
          detail=body.model_dump())  # fmt: skip
    return _out(row)


@router.delete("/agreements/{agreement_id}", status_code=204, responses=responses(*COMMON, 404))
def end(agreement_id: int, session: DbSession, caller: Admin) -> None:
    """End an agreement the caller's organisation gave."""
    mine = {a.id: a for a in active_agreements(session, owner=caller.organisation)}
    if agreement_id not in mine:
        raise Problem(404, f"no agreement {agreement_id}", field="agreement_id", kind="not-found")
    from reid.registry.services import now

    mine[agreement_id].revoked_at = now()
    audit(session, caller, "agreement.end", f"agreement:{agreement_id}")


@router.get("/audit", response_model=list[AuditOut], responses=responses(*COMMON))
def audit_log(
    session: DbSession,
    caller: Admin,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest entries first.")] = 100,
) -> list[AuditOut]:
    """The audit log of the caller's organisation: what its keys did, and what partners'
    keys did with its data (reads of its exact coordinates), newest first."""
    rows = session.scalars(
        select(AuditEntry).where(or_(AuditEntry.organisation == caller.organisation,
                                     AuditEntry.owner == caller.organisation))
        .order_by(AuditEntry.id.desc()).limit(limit)
    )  # fmt: skip
    return [AuditOut(at=r.at, key_id=r.key_id, organisation=r.organisation, action=r.action,
                     resource=r.resource, precise_location=r.precise_location,
                     owner=r.owner) for r in rows]  # fmt: skip
