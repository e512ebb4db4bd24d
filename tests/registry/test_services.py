"""Registry services: recording, the decision trail, merge and split keeping history."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from reid.errors import ReidError
from reid.privacy import LOCAL_ADMIN, PUBLIC
from reid.registry import (
    Registry,
    add_individual,
    confirm,
    decisions_of,
    get_individual,
    history_of,
    list_individuals,
    list_sightings,
    merge,
    reject,
    split,
)
from reid.registry.db import model_metadata
from tests.registry.helpers import sight, tiger, world


def test_migrations_match_the_models(registry):
    with registry.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), model_metadata())
    assert diff == []
    tables = set(inspect(registry.engine).get_table_names())
    assert {"sightings", "individuals", "movements", "decisions", "alembic_version"} <= tables


def test_sqlite_default_uses_wal_in_the_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_HOME", str(tmp_path))
    monkeypatch.delenv("REID_DATABASE_URL", raising=False)
    reg = Registry()
    with reg.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (tmp_path / "registry.sqlite").exists()
    Registry()  # opening again: migrations already at head
    reg.close()


def test_decision_trail_keeps_candidates_model_and_who(registry):
    with registry.session() as s:
        w = world(s)
        t, u = tiger(s, "T-1"), tiger(s, "T-2")
        sig = sight(s, w, t, "NP", 0, status="proposed")
        sig.individual = t
        confirm(s, sig, "ana", individual=u, reason="right flank matches T-2",
                candidates=[{"individual": "T-1", "score": 0.61},
                            {"individual": "T-2", "score": 0.58}],
                model_version="bigcat-default sha256:abc")  # fmt: skip
        reject(s, sig, "ben", reason="actually a leopard")
        trail = decisions_of(s, sig)
        assert [(d.action, d.decided_by) for d in trail] == [
            ("propose", "tester"), ("confirm", "ana"), ("reject", "ben")
        ]
        assert trail[1].candidates[1] == {"individual": "T-2", "score": 0.58}
        assert trail[1].model_version == "bigcat-default sha256:abc"
        assert sig.status == "rejected" and sig.individual.code == "T-2"


def test_merge_then_split_restores_exactly_and_keeps_history(registry):
    with registry.session() as s:
        w = world(s)
        a, b = tiger(s, "T-A"), tiger(s, "T-B")
        sight(s, w, a, "NP", 0, code="s1")
        sight(s, w, b, "IN", 1, code="s2")
        merge(s, a, b, "curator", "same stripes")
        assert get_individual(s, "T-B").code == "T-A"  # follows the merge
        assert [i.code for i in list_individuals(s)] == ["T-A"]
        assert {v.code for v in list_sightings(s, LOCAL_ADMIN, individual="T-A")} == {"s1", "s2"}
        sight(s, w, a, "NP", 5, code="s3")  # added after the merge: stays with T-A
        with pytest.raises(ReidError, match="already merged"):
            merge(s, a, get_individual(s, "T-B", follow_merges=False), "curator", "again")
        split(s, get_individual(s, "T-B", follow_merges=False), "curator", "wrong merge")
        assert {v.code for v in list_sightings(s, LOCAL_ADMIN, individual="T-A")} == {"s1", "s3"}
        assert {v.code for v in list_sightings(s, LOCAL_ADMIN, individual="T-B")} == {"s2"}
        actions = [d.action for d in history_of(s, get_individual(s, "T-A"))]
        assert actions.count("merge") == 1 and actions.count("split") == 1
        with pytest.raises(ReidError, match="nothing to split"):
            split(s, get_individual(s, "T-B"), "curator", "again")


def test_bad_input_is_refused_with_the_field(registry):
    with registry.session() as s:
        w = world(s)
        t = tiger(s, "T-1")
        with pytest.raises(ReidError, match="species 'lion'"):
            add_individual(s, "L-1", "lion")
        with pytest.raises(ReidError, match="already exists"):
            add_individual(s, "T-1", "tiger")
        with pytest.raises(ReidError, match="side 'top'"):
            sight(s, w, t, "NP", 0, side="top")
        with pytest.raises(ReidError, match="no individual 'nobody'"):
            get_individual(s, "nobody")


def test_list_sightings_generalises_for_the_public(registry):
    with registry.session() as s:
        w = world(s)
        sight(s, w, tiger(s, "T-1"), "NP", 0)
        (exact,) = list_sightings(s, LOCAL_ADMIN)
        (coarse,) = list_sightings(s, PUBLIC)
    assert (exact.lat, exact.lon) == (28.4012, 81.3021)
    assert (coarse.lat, coarse.lon) == (28.375, 81.375)
    assert exact.captured_at == coarse.captured_at and coarse.country == "NP"
