"""The eval protocol: side-aware groups, who counts as a query, pooled metrics."""

from pathlib import Path

import numpy as np
import pytest

from reid.data.records import ImageRecord
from reid.errors import ReidError
from reid.evaluate import comparison_groups, evaluate


def rec(name: str, ind: str | None, side: str = "left", species: str = "tiger") -> ImageRecord:
    return ImageRecord(Path(f"/x/{name}.jpg"), ind, species, side)  # type: ignore[arg-type]


class LabelOracle:
    """A test method: similarity 1 for the same individual id, else 0; records its calls.

    ``wrong`` lists individuals whose images are scored as most similar to a decoy
    (the first image of another individual), their own images coming second.
    """

    name = "oracle"

    def __init__(self, wrong: set[str] = frozenset()):
        self.calls: list[list[ImageRecord]] = []
        self.wrong = wrong

    def work(self, n: int) -> int:
        return n

    def similarity(self, records, progress=None):
        self.calls.append(list(records))
        ids = [r.individual_id for r in records]
        sim = np.array([[float(a == b and a is not None) for b in ids] for a in ids])
        for i, a in enumerate(ids):
            if a in self.wrong:  # own images only half as similar as one decoy
                sim[i] *= 0.5
                decoy = next(j for j, b in enumerate(ids) if b != a)
                sim[i, decoy] = 2.0
        if progress:
            progress(len(records))
        return sim


def test_left_and_right_flanks_are_never_compared():
    records = [rec("a1", "A"), rec("a2", "A"), rec("a3", "A", "right"), rec("a4", "A", "right")]
    oracle = LabelOracle()
    evaluate(records, oracle, show_progress=False)
    for call in oracle.calls:
        assert len({r.side for r in call}) == 1
    assert sorted(len(c) for c in oracle.calls) == [2, 2]


def test_groups_split_species_and_side():
    records = [rec("a", "A"), rec("b", "B", "right"), rec("c", "C", species="leopard")]
    assert comparison_groups(records) == {
        "leopard/left": [2],
        "tiger/left": [0],
        "tiger/right": [1],
    }


def test_only_individuals_with_another_image_are_queries():
    records = [rec("a1", "A"), rec("a2", "A"), rec("b1", "B"), rec("u1", None), rec("u2", None)]
    result = evaluate(records, LabelOracle(), show_progress=False)
    assert result["queries"] == 2  # A twice; B alone; unidentified never queries
    assert result["top1"] == 1.0
    assert result["mAP"] == 1.0
    assert result["images"] == 5


def test_wrong_matches_lower_the_pooled_metrics():
    records = [rec("a1", "A"), rec("a2", "A"), rec("b1", "B"), rec("b2", "B")]
    result = evaluate(records, LabelOracle(wrong={"B"}), show_progress=False)
    assert result["queries"] == 4
    assert result["top1"] == pytest.approx(0.5)
    # B's queries find their match at rank 2 of 3: AP 1/2 each.
    assert result["mAP"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)


def test_per_species_metrics_are_pooled_over_sides():
    records = [
        rec("a1", "A"),
        rec("a2", "A"),
        rec("a3", "A", "right"),
        rec("a4", "A", "right"),
        rec("l1", "L", species="leopard"),
        rec("l2", "L", species="leopard"),
        rec("m1", "M", species="leopard"),
        rec("m2", "M", species="leopard"),
    ]
    result = evaluate(records, LabelOracle(wrong={"M"}), show_progress=False)
    assert result["species"]["tiger"] == {"queries": 4, "top1": 1.0, "top5": 1.0, "mAP": 1.0}
    assert result["species"]["leopard"]["top1"] == pytest.approx(0.5)
    assert result["groups"]["tiger/right"]["queries"] == 2


def test_nothing_to_evaluate_is_a_clear_error():
    with pytest.raises(ReidError, match="no image has another image"):
        evaluate([rec("a", "A"), rec("b", "B")], LabelOracle(), show_progress=False)
    with pytest.raises(ReidError, match="no images"):
        evaluate([], LabelOracle(), show_progress=False)


# --------------------------------------------------------------------------- open set, unknown side


@pytest.mark.parametrize("all_unknown", [True, False])
def test_open_set_takes_flanks_of_unknown_side_as_entities(tmp_path, all_unknown):
    """ATRW's identities are flanks without a side: each is one flank entity, compared
    within its species (a mixed catalogue keeps the known sides)."""
    from dataclasses import replace

    import torch

    from reid.evaluate import evaluate_open_set
    from reid.model import ModelConfig, build_model
    from reid.release import save_release
    from reid.synthetic.catalogue import write_catalogue

    records = write_catalogue(
        tmp_path / "cat", species=("tiger",), individuals=4, images_per_side=3, seed=7, workers=1
    )
    torch.manual_seed(0)
    tiny = ModelConfig(
        backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
    )
    release = save_release(build_model(tiny).eval(), tmp_path / "model", name="tiny",
                           training_data="none", metrics={})  # fmt: skip
    flanks = [
        replace(r, individual_id=f"{r.individual_id}-{r.side}", side="unknown")
        if all_unknown or r.side == "left"
        else r
        for r in records
    ]
    result = evaluate_open_set(
        flanks, release, train_ratio=0.5, unknown_ratio=0.25, seed=0, workers=1,
        show_progress=False, calibration_sample=20,
    )  # fmt: skip
    assert result["n_known"] > 0 and result["n_unknown"] > 0
    # the best candidate's name maps back to the flank entity (the photos are
    # synthetic: keypoint verification finds the right flank)
    assert result["top1_known"] > 0.5
    assert 0 <= result["BAKS"] <= 1 and 0 <= result["BAUS"] <= 1
