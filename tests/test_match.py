"""The matcher end to end on a tiny synthetic catalogue with a tiny model built on the fly."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from reid.cli import app
from reid.data.load import load_catalogue
from reid.errors import ReidError
from reid.images import load_image
from reid.index import GalleryIndex
from reid.match import Matcher, MatchResult, enroll
from reid.methods.fused import FusedMethod, cross_fitted_fusion
from reid.model import ModelConfig, build_model
from reid.release import save_release
from reid.synthetic.catalogue import write_catalogue

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)
runner = CliRunner()


def tiny_release(folder, seed):
    torch.manual_seed(seed)
    model = build_model(TINY).eval()
    return save_release(model, folder, name=f"tiny{seed}", training_data="none", metrics={})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """4 leopards x 2 sides x 3 photos; individuals 1-3 enrolled without their last photo."""
    root = tmp_path_factory.mktemp("match")
    records = write_catalogue(
        root / "cat", species=("leopard",), individuals=4, images_per_side=3, seed=5, workers=1
    )
    release = tiny_release(root / "model", 0)
    flanks = {}
    for r in records:
        flanks.setdefault((r.individual_id, r.side), []).append(r)
    names = sorted({r.individual_id for r in records})
    gallery = [r for (ind, _), rs in flanks.items() if ind != names[-1] for r in rs[:-1]]
    held_out = {k: rs[-1] for k, rs in flanks.items() if k[0] != names[-1]}
    summary = enroll(gallery, root / "index", release, show_progress=False, workers=1)
    return root, release, records, gallery, held_out, names, summary


def test_enroll_builds_a_calibrated_index_with_cached_keypoints(setup):
    root, release, records, gallery, _, _, summary = setup
    assert summary.added == len(gallery) == 12 and summary.total == 12
    index = GalleryIndex.open(root / "index")
    assert "calibration" in index.attachments
    assert len(list((root / "index" / "features").rglob("*.npz"))) == 12
    again = enroll(gallery, root / "index", release, show_progress=False, workers=1)
    assert again.added == 0 and again.skipped["already enrolled"] == 12


def test_a_held_out_photo_is_matched_with_evidence(setup):
    root, release, _, _, held_out, names, _ = setup
    matcher = Matcher.open(root / "index", release)
    (ind, side), record = next(iter(held_out.items()))
    result = matcher.match(load_image(record.path), side=side, species="leopard", top=3)
    assert isinstance(result, MatchResult)
    best = result.candidates[0]
    assert best.individual == ind and best.side == side and best.local_score >= 6
    assert result.decision == "known" and result.individual == ind
    assert 0.5 <= result.probability <= 1 and result.new_probability < 0.5
    ev = best.evidence[0]
    assert ev.inliers == best.local_score == len(ev.query_points) == len(ev.gallery_points)
    h, w = load_image(ev.image).shape[:2]
    assert all(0 <= x <= w and 0 <= y <= h for x, y in ev.gallery_points)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["decision"] == "known" and data["candidates"][0]["evidence"][0]["inliers"] >= 6
    scores = [c.fused_score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)


def test_a_left_flank_is_never_returned_for_a_right_flank_query(setup):
    root, release, _, _, held_out, _, _ = setup
    matcher = Matcher.open(root / "index", release)
    for (_, side), record in held_out.items():
        other = "left" if side == "right" else "right"
        result = matcher.match(load_image(record.path), side=other, top=10)
        assert result.candidates and all(c.side == other for c in result.candidates)
        assert all(e.image for c in result.candidates for e in c.evidence)


def test_unknown_side_searches_both_and_says_which_matched(setup):
    root, release, _, _, held_out, _, _ = setup
    matcher = Matcher.open(root / "index", release)
    (ind, side), record = list(held_out.items())[1]
    result = matcher.match(load_image(record.path), top=10)
    assert {c.side for c in result.candidates} == {"left", "right"}
    assert result.candidates[0].individual == ind and result.candidates[0].side == side
    if result.decision == "known":
        assert result.side == side


def test_calibration_is_a_three_way_decision_and_old_indexes_still_read(setup):
    from reid.calibrate import LogisticCalibrator
    from reid.match import DECISION_CLASSES, Candidate, MatchCalibration

    root, release, records, _, held_out, _, _ = setup
    matcher = Matcher.open(root / "index", release)
    cal = matcher.calibration
    assert cal.decision is not None and cal.decision.classes == DECISION_CLASSES
    assert cal.new is None and cal.top is None
    assert sum(cal.decision.counts) == cal.decision.n_samples > 0
    r = next(iter(held_out.values()))
    res = matcher.match(load_image(r.path), side=r.side)
    p_top, p_new = cal.decide(res.candidates)
    assert 0 < p_top + p_new <= 1 + 1e-9
    assert res.new_probability == pytest.approx(p_new)
    # A stronger prior on new animals raises P(new) for the same evidence.
    shifted = MatchCalibration.from_dict(cal.to_dict() | {"new_prior": 0.9})
    assert shifted.decide(res.candidates)[1] > p_new or p_new > 0.999
    # An index calibrated by an earlier version (two logistic models) is still used.
    s1 = LogisticCalibrator(names=("-s1", "-margin"), weights=[1.0, 0.5], bias=0.0)
    top = LogisticCalibrator(names=("s1", "margin"), weights=[1.0, 1.0], bias=0.0)
    legacy = {"pair": cal.pair.to_dict(), "new": s1.to_dict(), "top": top.to_dict()}
    old = MatchCalibration.from_dict(legacy)
    assert old.decision is None
    other = Candidate("b", "leopard", "left", "", 0.1, 0, -9.0, 0.01, [])
    strong = [Candidate("a", "leopard", "left", "", 0.9, 40, 8.0, 0.99, []), other]
    weak = [Candidate("a", "leopard", "left", "", 0.1, 0, -8.0, 0.01, []), other]
    assert old.decide(strong)[1] < old.decide(weak)[1]
    with pytest.raises(ReidError, match="re-enroll"):
        MatchCalibration.from_dict({"pair": cal.pair.to_dict()})


def test_an_unenrolled_animal_is_more_likely_new(setup):
    root, release, records, _, held_out, names, _ = setup
    matcher = Matcher.open(root / "index", release)
    stranger = [r for r in records if r.individual_id == names[-1]]
    known = list(held_out.values())
    p_new_stranger = [
        matcher.match(load_image(r.path), side=r.side).new_probability for r in stranger[::2]
    ]
    p_new_known = [
        matcher.match(load_image(r.path), side=r.side).new_probability for r in known[::2]
    ]
    assert np.mean(p_new_stranger) > np.mean(p_new_known)


def test_the_expected_share_of_new_animals_moves_p_new_by_bayes_rule(setup, tmp_path):
    root, release, records, gallery, held_out, names, _ = setup
    from reid.match import MatchConfig

    query = next(iter(held_out.values()))
    image = load_image(query.path)
    stored = Matcher.open(root / "index", release).match(image, side=query.side)
    few = Matcher.open(root / "index", release, config=MatchConfig(new_prior=0.1))
    many = Matcher.open(root / "index", release, config=MatchConfig(new_prior=0.9))
    a = few.match(image, side=query.side)
    b = many.match(image, side=query.side)
    assert a.new_probability < stored.new_probability < b.new_probability
    # Only the prior moves: the odds of "new" against the best candidate scale by the
    # ratio of the prior odds, (0.9 / 0.1) / (0.1 / 0.9) = 81.
    cal_a, cal_b = few.calibration, many.calibration
    odds = [
        r.new_probability / c.decide(r.candidates)[0] for r, c in ((a, cal_a), (b, cal_b))
    ]
    assert odds[1] / odds[0] == pytest.approx(81, rel=1e-3)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ReidError, match="share of new individuals"):
            Matcher.open(root / "index", release, config=MatchConfig(new_prior=bad))
    # Stored at enrolment, kept when the index is extended, and read back by match.
    ix = tmp_path / "ix"
    enroll(gallery[:8], ix, release, new_prior=0.2, show_progress=False, workers=1)
    enroll(gallery[8:], ix, release, show_progress=False, workers=1)
    reopened = Matcher.open(ix, release)
    assert reopened.calibration.new_prior == pytest.approx(0.2)
    with pytest.raises(ReidError, match="share of new individuals"):
        enroll(gallery[:2], tmp_path / "other", release, new_prior=0, show_progress=False)
    p_new = []
    for extra in ([], ["--new-prior", "0.9"]):
        res = runner.invoke(app, ["match", str(query.path), "--index", str(ix), "--json", *extra])
        assert res.exit_code == 0, res.output
        p_new.append(json.loads(res.output)[0]["new_probability"])
    assert p_new[0] < p_new[1]
    bad = runner.invoke(app, ["match", str(query.path), "--index", str(ix), "--new-prior", "2"])
    assert bad.exit_code != 0 and "share of new individuals" in bad.output


def test_encounter_and_pair_probability(setup):
    root, release, records, _, held_out, _, _ = setup
    matcher = Matcher.open(root / "index", release)
    (ind, side), record = next(iter(held_out.items()))
    frames = [load_image(record.path), load_image(record.path)[:, 10:]]
    result = matcher.match_encounter(frames, side=side)
    assert result.candidates[0].individual == ind
    query = load_image(record.path)
    partner = load_image(result.candidates[0].evidence[0].image)  # verified, >= 6 inliers
    other = next(r for r in records if r.individual_id != ind and r.side == side)
    p_same = matcher.pair_probability(query, partner)
    p_other = matcher.pair_probability(query, load_image(other.path))
    assert 0 < p_other < p_same < 1


def test_an_encounter_verifies_only_its_best_frames(setup, monkeypatch):
    """Keypoints are extracted for the verify_frames frames closest to the gallery only,
    and the result still names the animal."""
    import dataclasses

    import reid.match as match_module

    root, release, records, _, held_out, _, _ = setup
    matcher = Matcher.open(root / "index", release)
    (ind, side), record = next(iter(held_out.items()))
    query = load_image(record.path)
    noise = np.random.default_rng(0).integers(0, 255, query.shape, dtype=np.uint8)
    frames = [noise, query, noise.copy(), query[:, 6:], noise.copy()]
    seen = []
    real = match_module.extract

    def spy(image, config):
        seen.append(next(i for i, f in enumerate(frames) if f is image))
        return real(image, config)

    monkeypatch.setattr(match_module, "extract", spy)
    # (No early stop here: a decisive first frame would spare the second one.)
    matcher.config = dataclasses.replace(matcher.config, decisive_inliers=0)
    result = matcher.match_encounter(frames, side=side)
    assert len(seen) == 2
    assert result.candidates[0].individual == ind
    emb = matcher.embed(frames)
    best = [max(h.score for h in hits) for hits in matcher.index.search(emb, 100, None, side)]
    assert sorted(seen) == sorted(np.argsort(best)[::-1][:2].tolist())
    seen.clear()
    matcher.config = dataclasses.replace(matcher.config, verify_frames=5)
    matcher.match_encounter(frames, side=side)
    assert sorted(seen) == [0, 1, 2, 3, 4]


def test_verification_stops_at_the_first_decisive_candidate(setup, monkeypatch):
    """Candidates are verified best global score first, verify_group at a time, and
    verification stops once one reaches decisive_inliers; evidence is never doubled."""
    import dataclasses

    import reid.match as match_module

    root, release, _, _, held_out, _, _ = setup
    matcher = Matcher.open(root / "index", release)
    pairs = []
    real = match_module.verify_many

    def spy(query, gallery, config):
        pairs.append(len(gallery))
        return real(query, gallery, config)

    monkeypatch.setattr(match_module, "verify_many", spy)
    record = next(iter(held_out.values()))
    image = load_image(record.path)
    emb = matcher.embed([image])
    cfg = matcher.config
    full = dataclasses.replace(cfg, decisive_inliers=0, verify_frames=1)
    matcher.config = full
    raw = matcher.candidates(emb, [match_module.extract(image, cfg.sift)], side=None, species=None)
    assert sum(pairs) == sum(min(len(c.hits), cfg.verify_images) for c in raw[: cfg.verify_top])
    inliers = [c.inliers for c in raw]
    threshold = max(inliers)
    assert threshold > 0, "the held-out photo should verify against its own flank"
    first = inliers.index(threshold)  # the first candidate (global order) to reach it
    pairs.clear()
    matcher.config = dataclasses.replace(full, decisive_inliers=threshold, verify_group=1)
    raw2 = matcher.candidates(emb, [match_module.extract(image, cfg.sift)], side=None, species=None)
    assert [c.key for c in raw2] == [c.key for c in raw]
    assert sum(pairs) == sum(min(len(c.hits), cfg.verify_images) for c in raw[: first + 1])
    assert [c.inliers for c in raw2[: first + 1]] == inliers[: first + 1]
    assert not any(c.verified for c in raw2[first + 1 :])
    for c in raw2:
        ids = [e.gallery_id for e in c.evidence]
        assert len(ids) == len(set(ids))


def test_screening_decides_on_the_embedding_alone_only_when_sure(setup, monkeypatch):
    """The screening model is fitted with the others and stored; with screening on, a
    query it is sure of is decided with its probabilities and no keypoints are made; with
    screening off (the default) every query is verified."""
    import dataclasses

    import reid.match as match_module
    from reid.match import DECISION_CLASSES, SCREEN_FEATURES, MatchCalibration

    root, release, _, _, held_out, _, _ = setup
    matcher = Matcher.open(root / "index", release)
    cal = matcher.calibration
    assert cal.screen is not None and cal.screen.names == SCREEN_FEATURES
    assert cal.screen.classes == DECISION_CLASSES
    assert sum(cal.screen.counts) == cal.screen.n_samples == cal.decision.n_samples
    again = MatchCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    record = next(iter(held_out.values()))
    image = load_image(record.path)
    emb = matcher.embed([image])
    raw = matcher.candidates(emb, [], side=record.side, species=None, verify=False)
    p = cal.screen_decide(raw)
    assert again.screen_decide(raw) == pytest.approx(p)
    assert 0 < p[0] + p[1] <= 1 + 1e-9
    extracted = []
    real = match_module.extract

    def spy(im, config):
        extracted.append(1)
        return real(im, config)

    monkeypatch.setattr(match_module, "extract", spy)
    verified = matcher.match(image, side=record.side)
    assert verified.verified and extracted
    # Screening at a confidence the screen reaches for this query decides it unverified.
    extracted.clear()
    matcher.config = dataclasses.replace(matcher.config, screen=max(p) - 1e-9)
    screened = matcher.match(image, side=record.side)
    assert not screened.verified and not extracted
    assert (screened.probability, screened.new_probability) == pytest.approx(
        (p[0] if screened.decision == "known" else p[1], p[1])
    )
    assert screened.decision == ("known" if p[0] >= p[1] else "new")
    assert all(c.local_score == 0 for c in screened.candidates)
    globals_ = [c.global_score for c in screened.candidates]
    assert globals_ == sorted(globals_, reverse=True)
    assert screened.to_dict()["verified"] is False
    # A confidence above what the screen reaches for this query verifies it.
    matcher.config = dataclasses.replace(matcher.config, screen=min(max(p) + 1e-6, 0.999999))
    if max(p) + 1e-6 < 0.999999:
        assert matcher.match(image, side=record.side).verified and extracted
    # An index calibrated before screening existed (no screen model) always verifies.
    matcher.calibration = dataclasses.replace(cal, screen=None)
    extracted.clear()
    matcher.config = dataclasses.replace(matcher.config, screen=0.01)
    assert matcher.match(image, side=record.side).verified and extracted
    with pytest.raises(ReidError, match="re-enroll"):
        bad = cal.to_dict()
        bad["screen"]["names"] = ["s1", "margin"]
        MatchCalibration.from_dict(bad)


def test_opening_with_another_model_is_refused(setup, tmp_path):
    root, *_ = setup
    other = tiny_release(tmp_path / "other", 1)
    with pytest.raises(ReidError, match="rebuild it with `reid enroll"):
        Matcher.open(root / "index", other)
    with pytest.raises(ReidError, match="cannot be compared"):
        enroll(load_catalogue(root / "cat")[:2], root / "index", other, show_progress=False)


def test_cli_enroll_and_match(setup, tmp_path):
    root, release, _, gallery, held_out, _, _ = setup
    (ind, side), record = next(iter(held_out.items()))
    out = runner.invoke(
        app, ["enroll", str(root / "cat"), "--index", str(tmp_path / "ix"), "--model",
              str(release), "--workers", "1", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.output[out.output.index("{") :])["added"] == 24
    res = runner.invoke(
        app, ["match", str(record.path), "--index", str(tmp_path / "ix"), "--side", side,
              "--top", "2", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    # enrolled with every photo this time: the query image itself is in the gallery
    assert data[0]["candidates"][0]["individual"] == ind and len(data[0]["candidates"]) == 2
    table = runner.invoke(app, ["match", str(record.path), "--index", str(tmp_path / "ix")])
    assert table.exit_code == 0 and ind in table.output and "P(new)" in table.output
    bad = runner.invoke(app, ["match", str(record.path), "--index", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "reid enroll" in bad.output


def test_a_descriptor_shortlist_verifies_what_the_embedding_misses(setup):
    """MatchConfig.local_shortlist: the gallery images sharing the most mutual descriptor
    neighbours with the query are verified whatever their embedding rank, as a flank the
    search did not return or as another image of one it did."""
    from dataclasses import replace

    from reid.match import MatchConfig

    root, release, *_ = setup
    cfg = MatchConfig(shortlist=1, verify_top=1, verify_images=1, decisive_inliers=0)
    plain = Matcher.open(root / "index", release, config=cfg)
    assert plain.local_shortlist == 0
    entries = plain.index.entries()
    target = entries[0]
    wrong = next(i for i, e in entries.items() if e.side == target.side
                 and e.individual != target.individual)  # fmt: skip
    image = load_image(target.image)  # the query shows gallery photo 0 again
    where = dict(side=target.side, species=target.species, top=5)
    # an embedding that points at another animal: the search returns only that flank
    emb = plain.index.vectors([wrong])[0]
    before = plain.match(image, embedding=emb, **where)
    assert [c.individual for c in before.candidates] == [entries[wrong].individual]
    picks = Matcher.open(root / "index", release, config=replace(cfg, local_shortlist=1))
    assert picks.local_shortlist == 1
    after = picks.match(image, embedding=emb, **where)
    assert {c.individual for c in after.candidates} == {target.individual,
                                                        entries[wrong].individual}
    best = after.candidates[0]
    assert best.individual == target.individual and best.local_score >= 20
    assert best.evidence[0].gallery_id == 0 and after.decision == "known"
    # the target flank's other photo leads the search; photo 0, second by the embedding,
    # is verified besides it (verify_images is 1)
    sibling = next(i for i, e in entries.items() if i != 0 and e.flank == target.flank)
    emb = plain.index.vectors([sibling])[0]
    only = plain.match(image, embedding=emb, **where)
    assert [e.gallery_id for e in only.candidates[0].evidence] == [sibling]
    both = picks.match(image, embedding=emb, **where)
    assert {e.gallery_id for e in both.candidates[0].evidence} == {0, sibling}
    assert both.candidates[0].local_score >= 20
    # drawn only when the embedding's candidates were not decisive
    lazy = Matcher.open(root / "index", release,
                        config=replace(cfg, local_shortlist=1, decisive_inliers=20))  # fmt: skip
    calls = []
    counts = lazy._mutual_counts
    lazy._mutual_counts = lambda *a: calls.append(1) or counts(*a)
    found = lazy.match(image, embedding=plain.index.vectors([0])[0], **where)
    assert found.candidates[0].local_score >= 20 and calls == []
    lazy.match(image, embedding=plain.index.vectors([wrong])[0], **where)
    assert calls == [1]
    with pytest.raises(ReidError, match="whole number"):
        Matcher.open(root / "index", release, config=MatchConfig(local_shortlist=-1))


def test_the_descriptor_shortlist_keeps_to_the_searched_organisations_and_exclusions(
    setup, tmp_path
):
    """Every gallery image is compared by descriptors, but only those the search may see:
    another organisation's photos, left-out ids and a left-out flank are never picked."""
    from reid.match import MatchConfig

    root, release, _, gallery, *_ = setup
    half = len(gallery) // 2
    enroll(gallery[:half], tmp_path / "ix", release, organisation="a", show_progress=False,
           workers=1)  # fmt: skip
    enroll(gallery[half:], tmp_path / "ix", release, organisation="b", show_progress=False,
           workers=1)  # fmt: skip
    m = Matcher.open(tmp_path / "ix", release,
                     config=MatchConfig(shortlist=1, verify_top=1, local_shortlist=50))  # fmt: skip
    entries = m.index.entries()
    own = {i for i, e in entries.items() if e.organisation == "a"}
    other = next(i for i, e in entries.items() if e.organisation == "b")
    e = entries[other]
    image = load_image(e.image)  # a photo of organisation b's
    result = m.match(image, side=e.side, species=e.species, organisations=["a"], top=50)
    assert result.candidates and all(c.organisation == "a" for c in result.candidates)
    assert {ev.gallery_id for c in result.candidates for ev in c.evidence} <= own
    # a calibration query leaves itself (or its flank) out, also of the descriptors' picks
    feats = [m.features.get(other)]
    emb = m.index.vectors([other])
    raws = m.candidates(emb, feats, side=e.side, species=e.species, exclude_ids={other})
    seen = {h.id for c in raws for h in c.hits} | {ev.gallery_id for c in raws for ev in c.evidence}
    assert other not in seen and any(c.verified for c in raws)
    raws = m.candidates(emb, feats, side=e.side, species=e.species, exclude_flank=e.flank)
    assert raws and all(c.key != e.flank for c in raws)


def test_enroll_stores_the_descriptor_shortlist_with_its_calibration(setup, tmp_path):
    from reid.match import MatchConfig

    root, release, _, gallery, *_ = setup
    out = runner.invoke(
        app, ["enroll", str(root / "cat"), "--index", str(tmp_path / "ix"), "--model",
              str(release), "--workers", "1", "--shortlist-local", "2", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads(out.output[out.output.index("{") :])["calibration"]["local_shortlist"] == 2
    assert Matcher.open(tmp_path / "ix", release).local_shortlist == 2
    override = Matcher.open(tmp_path / "ix", release, config=MatchConfig(local_shortlist=0))
    assert override.local_shortlist == 0
    # an index enrolled before keeps none
    assert Matcher.open(root / "index", release).local_shortlist == 0
    res = runner.invoke(
        app, ["eval", str(root / "cat"), "--open-set", "--model", str(release), "--workers", "1",
              "--json", "--unknown-ratio", "0.25", "--shortlist-local", "2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["calibration"]["local_shortlist"] == 2 and data["n_known"] > 0
    bad = runner.invoke(app, ["eval", str(root / "cat"), "--open-set", "--shortlist", "5"])
    assert bad.exit_code != 0 and "--shortlist" in bad.output


def test_refining_an_index_without_the_extra_keypoints_is_refused(setup):
    """reid enroll --refine N on an existing index takes the index's local features, and
    refuses (before anything is written) when they keep no more keypoints than they match
    on, as every RootSIFT index does."""
    root, release, *_ = setup
    saved = {p.name: p.stat().st_mtime_ns for p in (root / "index").iterdir()}
    out = runner.invoke(app, ["enroll", str(root / "cat"), "--index", str(root / "index"),
                              "--model", str(release), "--refine", "2"])  # fmt: skip
    assert out.exit_code != 0
    assert "include more than it matches on (rootsift here)" in " ".join(out.output.split())
    assert {p.name: p.stat().st_mtime_ns for p in (root / "index").iterdir()} == saved


def test_eval_open_set_reports_baks_baus_and_calibration(setup):
    root, release, *_ = setup
    diagram = root / "reliability.png"
    res = runner.invoke(
        app, ["eval", str(root / "cat"), "--open-set", "--model", str(release), "--workers", "1",
              "--json", "--unknown-ratio", "0.25", "--reliability", str(diagram)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert {"BAKS", "BAUS", "gm", "ECE", "n_known", "n_unknown"} <= set(data)
    assert data["n_known"] > 0 and data["n_unknown"] > 0
    assert 0 <= data["ECE"] <= 1 and data["gm"] == pytest.approx(
        np.sqrt(data["BAKS"] * data["BAUS"])
    )
    # beside the ECE, what a perfectly calibrated matcher would show on these queries
    assert 0 <= data["ECE_perfect"] <= data["ECE_perfect_p95"] <= 1
    assert 0 < data["ECE_p"] <= 1
    assert data["reliability_diagram"] == str(diagram)
    with Image.open(diagram) as im:
        assert im.format == "PNG"
    # refused before anything is evaluated: a long run never ends on a lost diagram
    for extra, words in ((["--reliability", str(root / "nowhere" / "r.png")], "no such folder"),
                         (["--reliability", str(root / "r.svg")], "PNG"),
                         (["--method", "embedding", "--reliability", str(diagram)],
                          "applies to --open-set")):  # fmt: skip
        args = ["eval", str(root / "cat"), "--model", str(release), *extra]
        if "--method" not in extra:
            args.append("--open-set")
        bad = runner.invoke(app, args)
        assert bad.exit_code != 0 and words in " ".join(bad.output.split()), bad.output


def test_fused_method_is_cross_fitted_and_ranks_by_both_scores(setup):
    root, release, records, *_ = setup
    labels = ["a", "a", "b", "b", "c", "c", "d", "d"]
    rng = np.random.default_rng(0)
    cosine = rng.uniform(-0.2, 0.2, (8, 8))
    local = np.zeros((8, 8))
    for i in range(0, 8, 2):  # genuine pairs: more inliers and higher cosine
        local[i, i + 1] = local[i + 1, i] = 3.0
        cosine[i, i + 1] = cosine[i + 1, i] = 0.5
    fused = cross_fitted_fusion([cosine, local], labels, fallback=local)
    np.fill_diagonal(fused, -np.inf)
    assert [int(np.argmax(row)) for row in fused] == [1, 0, 3, 2, 5, 4, 7, 6]
    method = FusedMethod(workers=1, model=release)
    left = [r for r in records if r.side == "left"]
    sim = method.similarity(left)
    assert sim.shape == (len(left), len(left)) and np.all(np.isfinite(sim))


@pytest.mark.slow
def test_demo_enrolls_and_matches(tmp_path, setup):
    _, release, *_ = setup
    result = runner.invoke(app, ["demo", "--home", str(tmp_path), "--model", str(release)])
    assert result.exit_code == 0, result.output
    assert "never-enrolled animals called new" in result.output
    assert "enrolled animals named right" in result.output


def test_calibration_is_tempered_for_the_step_from_left_out_to_real_queries(
    setup, tmp_path, monkeypatch
):
    """Queries of flanks with >= 3 gallery images are also made with one more image out;
    the temperature fitted on that step is given to the decision and screening models."""
    import reid.match as match_module
    from reid.match import fit_calibration

    root, release, records, _, _, _, _ = setup
    # Every photo enrolled: 8 flanks of 3 images, so each query has a second image out.
    enroll(records, tmp_path / "full", release, show_progress=False, workers=1)
    matcher = Matcher.open(tmp_path / "full", release)
    monkeypatch.setattr(match_module, "MIN_TEMPERATURE_QUERIES", 4)
    cal = fit_calibration(matcher, sample=24, workers=1, show_progress=False)
    assert cal.stats["temperature_queries"] == 24
    assert 0.25 <= cal.decision.temperature <= 4.0
    assert cal.stats["temperature"] == cal.decision.temperature
    assert cal.stats["screen_temperature"] == cal.screen.temperature
    assert cal.decision.temperature != 1.0 or cal.screen.temperature != 1.0
    # The same data with too few such queries: untempered.
    monkeypatch.setattr(match_module, "MIN_TEMPERATURE_QUERIES", 25)
    plain = fit_calibration(matcher, sample=24, workers=1, show_progress=False)
    assert plain.decision.temperature == plain.screen.temperature == 1.0
    assert plain.decision.weights == cal.decision.weights  # the fit itself is unchanged
    # The setup's gallery has 2 images per flank: no query can lose a second one.
    two = Matcher.open(root / "index", release)
    assert two.calibration.stats["temperature_queries"] == 0
    assert two.calibration.decision.temperature == 1.0


def test_calibration_leaves_each_querys_related_photos_out(setup, tmp_path):
    """``related`` (near-duplicates, the rest of a burst) leaves gallery photos out with
    each calibration query: with one other photo of its flank out, no query can lose a
    second one; with all of them out, every query could be made only as "new", and the
    fit is refused (a model fitted on "new" queries alone calls every query new)."""
    from reid.match import MIN_KNOWN_QUERIES, CannotCalibrate, fit_calibration

    _, release, records, *_ = setup
    enroll(records, tmp_path / "full", release, show_progress=False, workers=1)
    matcher = Matcher.open(tmp_path / "full", release)
    entries = matcher.index.entries()
    flank_of = {i: e.flank for i, e in entries.items()}
    members = {}
    for i, f in sorted(flank_of.items()):
        members.setdefault(f, []).append(i)

    def one_more(i):
        return [next(j for j in members[flank_of[i]] if j != i)]

    cal = fit_calibration(matcher, sample=24, workers=1, show_progress=False, related=one_more)
    assert cal.stats["queries"] == 24 and cal.stats["temperature_queries"] == 0
    assert cal.decision.counts[2] == 24 and sum(cal.decision.counts[:2]) == 24

    def whole_flank(i):
        return [j for j in members[flank_of[i]] if j != i]

    with pytest.raises(CannotCalibrate, match="only 0 of 24 calibration queries"):
        fit_calibration(matcher, sample=24, workers=1, show_progress=False, related=whole_flank)
    # all but a few flanks one burst: too few known queries are refused as well
    keep = sorted(members)[:1]  # one flank of 3 photos: 3 known queries

    def all_but_one(i):
        return [] if flank_of[i] in keep else whole_flank(i)

    assert MIN_KNOWN_QUERIES > 3
    with pytest.raises(CannotCalibrate, match="only 3 of 24"):
        fit_calibration(matcher, sample=24, workers=1, show_progress=False, related=all_but_one)
    keep = sorted(members)[:2]  # two such flanks: 6 known queries, enough
    few = fit_calibration(matcher, sample=24, workers=1, show_progress=False, related=all_but_one)
    assert sum(few.decision.counts[:2]) == 6 and few.decision.counts[2] == 24
    assert few.stats["genuine_pairs"] > 0


def test_near_duplicates_of_a_gallery_photo_are_found_per_flank(setup, tmp_path):
    """A copy of a photo under another name is its near-duplicate (same flank only); a
    photo that cannot be read has none; an impossible threshold links nothing."""
    import shutil
    from dataclasses import replace

    from reid.match import near_duplicate_related

    _, release, records, *_ = setup
    flank = [r for r in records if (r.individual_id, r.side) == (records[0].individual_id,
                                                                  records[0].side)]  # fmt: skip
    other = next(r for r in records if r.individual_id != records[0].individual_id)
    copy = tmp_path / "copy.png"
    shutil.copy(flank[0].path, copy)
    other_copy = tmp_path / "other.png"
    shutil.copy(flank[0].path, other_copy)  # the same pixels, but another individual's photo
    gallery = [*flank, replace(flank[0], path=copy), replace(other, path=other_copy), other]
    enroll(gallery, tmp_path / "index", release, show_progress=False, workers=1)
    index = GalleryIndex.open(tmp_path / "index")
    id_of = {e.image: i for i, e in index.entries().items()}
    original, duplicate = id_of[str(flank[0].path.resolve())], id_of[str(copy.resolve())]
    related = near_duplicate_related(index)
    assert duplicate in related(original) and original in related(duplicate)
    assert id_of[str(other_copy.resolve())] not in related(original)
    assert related(id_of[str(other_copy.resolve())]) == []
    assert near_duplicate_related(index, threshold=1.01)(original) == []
    copy.unlink()  # unreadable now: no near-duplicates, no error
    assert duplicate not in near_duplicate_related(index)(original)


def test_locate_makes_its_boxer_once_and_counts_the_gallery_once_per_change(setup, monkeypatch):
    """Matcher.locate runs once per frame of a bulk run: the flank boxer is made once and
    gallery_boxed walks the entries again only after the index changed."""
    from reid.data.records import BBox
    from reid.index import GalleryEntry

    root, release, *_ = setup
    matcher = Matcher.open(root / "index", release)
    index = matcher.index
    walks = []
    entries = index.entries
    monkeypatch.setattr(index, "entries", lambda: walks.append(1) or entries())
    made = []

    class Boxer:
        def box(self, image):
            return BBox(1, 2, 3, 4)

    monkeypatch.setattr("reid.boxhead.boxer_of", lambda *a, **k: made.append(1) or Boxer())
    image = np.zeros((40, 60, 3), np.uint8)
    assert matcher.locate(image) is None and matcher.locate(image) is None  # unboxed gallery
    assert not matcher.gallery_boxed()
    assert len(walks) == 1 and len(made) == 1
    # enrolling as many boxed photos as there are unboxed ones makes the gallery boxed
    n = len(index)
    boxed = [GalleryEntry(f"boxed{i}.png", "L9", "leopard", "left", bbox=(0, 0, 8, 8))
             for i in range(n)]  # fmt: skip
    ids = index.add(np.random.default_rng(0).normal(size=(n, index.dim)), boxed)
    assert matcher.gallery_boxed() and matcher.locate(image) == (1, 2, 3, 4)
    assert len(walks) == 2 and len(made) == 1
    index.relabel(ids[:1], "L8")  # a change that moves no box: recounted, same answer
    assert matcher.gallery_boxed() and len(walks) == 3
    index.remove(ids[:1])  # fewer than half boxed again
    assert not matcher.gallery_boxed() and matcher.locate(image) is None
    assert len(walks) == 4 and len(made) == 1


def test_only_geometrically_checked_inliers_stop_verification_early():
    """Counts of confident learned matches (ALIKED's geometry "none") reach 20 on some
    impostor pairs: with them every candidate is verified."""
    from reid.local import AlikedConfig, SiftConfig
    from reid.match import MatchConfig, decisive_inliers

    cfg = MatchConfig()
    assert decisive_inliers(cfg, SiftConfig()) == cfg.decisive_inliers == 20
    assert decisive_inliers(cfg, AlikedConfig(geometry="homography")) == 20
    assert decisive_inliers(cfg, AlikedConfig()) == 0
