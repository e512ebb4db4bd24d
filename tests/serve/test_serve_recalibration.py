"""Enrolments through the API refit the match calibration in the background when the
gallery has grown enough, and swap it in without disturbing the matches being served."""

import threading

import pytest

from reid.index import GalleryIndex
from reid.match import CALIBRATION_KEY
from serve.calibration import eligible_flanks, refit_due
from tests.serve.conftest import match_form, photo_bytes


def _enrol(world, record, individual, side):
    return world.client.post(
        "/v1/gallery", headers=world.auth("NPO", "contributor"),
        data={"individual": individual, "species": "tiger", "side": side},
        files={"image": ("g.png", photo_bytes(record), "image/png")},
    )  # fmt: skip


def _match(world, record):
    return world.client.post(
        "/v1/match", headers=world.auth("NPO", "contributor"),
        data=match_form(side=record.side),
        files={"image": ("q.png", photo_bytes(record), "image/png")},
    )  # fmt: skip


def _same_side(held_out, n=2):
    """``n`` held-out photos of one side (different animals): enrolled as one new flank."""
    side = sorted(held_out)[0][1]
    return [v[0] for k, v in sorted(held_out.items()) if k[1] == side][:n], side


@pytest.mark.parametrize(
    ("fitted", "now", "due"),
    [(None, 1, False), (None, 2, True), (12, 12, False), (12, 13, True),  # small: any growth
     (100, 105, False), (100, 110, True), (100, 95, False), (3, 1, False)],
)  # fmt: skip
def test_refit_rule(fitted, now, due):
    assert refit_due(fitted, now, growth=0.10, small=50) is due


def test_enrolment_refits_the_calibration_once_the_gallery_grew(world, held_out):
    state = world.app.state.reid
    recal = state.recalibrator
    matcher = state.matcher
    before = matcher.calibration
    flanks = eligible_flanks(matcher.index)
    assert recal.fitted == flanks == 12  # 6 tigers x 2 sides, 2 images each
    (first, second), side = _same_side(held_out)
    # one image of a new flank: no flank more with two images, nothing to refit
    r = _enrol(world, first, "T-NPO-77", side)
    assert r.status_code == 201 and r.json()["recalibrating"] is False
    assert recal.wait_idle(60) and matcher.calibration is before
    # its second image: 13 eligible flanks, a refit (the gallery is small)
    r = _enrol(world, second, "T-NPO-77", side)
    assert r.status_code == 201, r.text
    assert recal.wait_idle(120), "the refit did not finish"
    assert recal.last_error is None and recal.refits == 1 and recal.fitted == 13
    after = matcher.calibration
    assert after is not before and after.stats["eligible_flanks"] == 13
    assert after.new_prior == before.new_prior  # the operator's prior is kept
    # saved with the index: a restarted service loads the new calibration
    stored = GalleryIndex.open(state.index_dir).attachments[CALIBRATION_KEY]
    assert stored == after.to_dict()
    assert 'reid_calibration_refits_total{result="done"} 1.0' in world.client.get("/metrics").text
    r = _match(world, second)
    assert r.status_code == 200 and r.json()["candidates"][0]["individual"] == "T-NPO-77"


def test_matches_go_on_during_a_refit_and_then_use_the_new_calibration(
    world, held_out, monkeypatch
):
    import serve.calibration as sc

    state = world.app.state.reid
    matcher = state.matcher
    before = matcher.calibration
    started, release = threading.Event(), threading.Event()
    real_fit = sc.fit_calibration

    def slow_fit(*args, **kwargs):
        started.set()
        assert release.wait(60)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(sc, "fit_calibration", slow_fit)
    (first, second), side = _same_side(held_out)
    assert _enrol(world, first, "T-NPO-78", side).status_code == 201
    r = _enrol(world, second, "T-NPO-78", side)  # answers while the refit is under way
    assert r.status_code == 201 and r.json()["recalibrating"] is True
    assert started.wait(30)
    try:
        for record in (first, second):  # served meanwhile, with the previous calibration
            assert _match(world, record).status_code == 200
        assert matcher.calibration is before and state.recalibrator.pending
        # more enrolments during the fit do not start a second one alongside it
        third = next(v[0] for k, v in sorted(held_out.items()) if k[1] == side
                     and v[0] not in (first, second))  # fmt: skip
        assert _enrol(world, third, "T-NPO-79", side).status_code == 201
    finally:
        release.set()
    assert state.recalibrator.wait_idle(120)
    assert state.recalibrator.refits == 1 and state.recalibrator.last_error is None
    assert matcher.calibration is not before
    assert matcher.calibration.stats["eligible_flanks"] == 13
    assert _match(world, second).status_code == 200


def test_a_refit_that_finds_only_bursts_keeps_the_calibration(world, held_out, monkeypatch):
    """A gallery whose flanks are each one burst (their photos near-duplicates, left out
    with every calibration query) leaves the fit no "known" query: the refit is refused,
    the calibration in use (and saved) is kept, the reason logged and kept, and it is not
    retried until more flanks are eligible."""
    import serve.calibration as sc

    def whole_flank(index):  # every photo of a flank a near-duplicate of the others
        entries = index.entries()
        return lambda i: [j for j, e in entries.items()
                          if j != i and e.flank == entries[i].flank]  # fmt: skip

    monkeypatch.setattr(sc, "near_duplicate_related", whole_flank)
    state = world.app.state.reid
    recal, matcher = state.recalibrator, state.matcher
    before = matcher.calibration
    stored = GalleryIndex.open(state.index_dir).attachments[CALIBRATION_KEY]
    (first, second), side = _same_side(held_out)
    assert _enrol(world, first, "T-NPO-80", side).status_code == 201
    r = _enrol(world, second, "T-NPO-80", side)  # 13 eligible flanks by count: a refit
    assert r.status_code == 201 and r.json()["recalibrating"] is True
    assert recal.wait_idle(120)
    assert matcher.calibration is before and recal.refits == 0 and recal.fitted == 12
    assert "cannot calibrate" in recal.last_error and "near-duplicate" in recal.last_error
    assert GalleryIndex.open(state.index_dir).attachments[CALIBRATION_KEY] == stored
    metrics = world.client.get("/metrics").text
    assert 'reid_calibration_refits_total{result="refused"} 1.0' in metrics
    assert not recal.due()  # nothing new to fit on
    r = _match(world, second)
    assert r.status_code == 200 and r.json()["candidates"][0]["individual"] == "T-NPO-80"
