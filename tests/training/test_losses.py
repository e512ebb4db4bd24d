"""Losses on tiny tensors with values computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import BatchHardTriplet, ReidLoss, SubCenterArcFace


def points(*xs):
    return torch.tensor([[x, 0.0] for x in xs])


def test_batch_hard_triplet_on_four_points():
    # class 0 at x=0 and x=1, class 1 at x=3 and x=5; margin 3:
    #   anchor 0: hardest positive 1, nearest negative 3 -> 1 - 3 + 3 = 1
    #   anchor 1: 1, min(2, 4) = 2 -> 2;  anchor 3: 2, min(3, 2) = 2 -> 3
    #   anchor 5: 2, min(5, 4) = 4 -> 1;  mean 7 / 4
    loss = BatchHardTriplet(margin=3.0)(points(0, 1, 3, 5), torch.tensor([0, 0, 1, 1]))
    assert loss.item() == pytest.approx(1.75, abs=1e-5)


def test_batch_hard_triplet_is_zero_when_classes_are_apart_by_the_margin():
    loss = BatchHardTriplet(margin=0.5)(points(0, 1, 3, 4), torch.tensor([0, 0, 1, 1]))
    assert loss.item() == 0.0


def test_anchors_without_a_positive_are_left_out():
    # the lone class-2 sample has no positive: only the four others count (as above)
    x = points(0, 1, 3, 5, 100)
    loss = BatchHardTriplet(margin=3.0)(x, torch.tensor([0, 0, 1, 1, 2]))
    assert loss.item() == pytest.approx(1.75, abs=1e-5)
    lonely = BatchHardTriplet()(points(0, 1), torch.tensor([0, 1]))
    assert lonely.item() == 0.0


def test_triplet_gradient_is_finite_for_identical_embeddings():
    x = torch.ones(4, 3, requires_grad=True)
    BatchHardTriplet()(x, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(x.grad).all()


def arcface_with_axes(num_classes=3, subcenters=1, scale=10.0, margin=0.5):
    """Class c's sub-centres all along axis c of R^4 (unit vectors)."""
    head = SubCenterArcFace(4, num_classes, subcenters, scale, margin)
    with torch.no_grad():
        head.weight.copy_(torch.eye(4)[:num_classes].repeat_interleave(subcenters, dim=0))
    return head


def test_arcface_logits_for_a_sample_exactly_on_its_centre():
    head = arcface_with_axes(scale=10.0, margin=0.5)
    e = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    logits = head.logits(e, torch.tensor([0]))
    # own class: s*cos(0 + m); the other classes are orthogonal: s*cos(90°) = 0
    assert logits[0, 0].item() == pytest.approx(10 * math.cos(0.5), abs=1e-5)
    assert logits[0, 1:].abs().max().item() < 1e-6
    expected = -math.log(math.exp(10 * math.cos(0.5)) / (math.exp(10 * math.cos(0.5)) + 2))
    assert head(e, torch.tensor([0])).item() == pytest.approx(expected, abs=1e-5)


def test_arcface_margin_applies_to_the_own_class_only():
    head = arcface_with_axes(scale=1.0, margin=0.3)
    theta = 0.6
    e = torch.tensor([[math.cos(theta), math.sin(theta), 0.0, 0.0]])
    logits = head.logits(e, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(math.cos(theta + 0.3), abs=1e-5)
    assert logits[0, 1].item() == pytest.approx(math.sin(theta), abs=1e-5)  # cos(90° - θ)
    # the same sample labelled class 1 gets the margin there instead
    logits1 = head.logits(e, torch.tensor([1]))
    assert logits1[0, 0].item() == pytest.approx(math.cos(theta), abs=1e-5)
    assert logits1[0, 1].item() == pytest.approx(math.cos(math.pi / 2 - theta + 0.3), abs=1e-5)


def test_arcface_past_pi_falls_back_to_a_decreasing_penalty():
    head = arcface_with_axes(scale=1.0, margin=0.5)
    e = torch.tensor([[-1.0, 0.0, 0.0, 0.0]])  # θ = π: θ + m would wrap around
    logit = head.logits(e, torch.tensor([0]))[0, 0].item()
    assert logit == pytest.approx(-1.0 - 0.5 * math.sin(0.5), abs=1e-5)


def test_sub_centres_take_the_nearest():
    head = SubCenterArcFace(2, 2, subcenters=2, scale=1.0, margin=0.0)
    with torch.no_grad():  # class 0: +x and -x; class 1: +y and -y
        head.weight.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]))
    cos = head.cosine(torch.tensor([[-2.0, 0.0], [0.0, -0.5]]))
    assert torch.allclose(cos, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_class_weights_live_in_the_loss_and_learn():
    head = SubCenterArcFace(8, 5, subcenters=3)
    assert head.weight.shape == (15, 8)
    e = F.normalize(torch.randn(6, 8), dim=1)
    head(e, torch.tensor([0, 1, 2, 3, 4, 0])).backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_reid_loss_is_the_weighted_sum_of_its_parts():
    torch.manual_seed(0)
    e = F.normalize(torch.randn(8, 4), dim=1)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    arc = SubCenterArcFace(4, 4)
    tri = BatchHardTriplet(0.3)
    total, parts = ReidLoss(arc, tri, arcface_weight=0.5, triplet_weight=2.0)(e, y)
    assert set(parts) == {"arcface", "triplet"}
    assert parts["arcface"].item() == pytest.approx(arc(e, y).item())
    assert parts["triplet"].item() == pytest.approx(tri(e, y).item())
    expected = 0.5 * parts["arcface"] + 2.0 * parts["triplet"]
    assert total.item() == pytest.approx(expected.item())


def test_imprint_puts_each_class_at_its_mean_embedding():
    arc = SubCenterArcFace(4, num_classes=3, subcenters=2, margin=0.0)
    x = torch.tensor([[1.0, 0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    before = arc.weight.detach().clone()
    assert arc.imprint(x, labels, jitter=0.0) == 2
    w = F.normalize(arc.weight.detach(), dim=1).view(3, 2, 4)
    mean0 = F.normalize(torch.tensor([1 + 2**-0.5, 2**-0.5, 0, 0]), dim=0)
    mean1 = F.normalize(torch.tensor([0, 0, 1.0, -1.0]), dim=0)
    for k in range(2):
        assert torch.allclose(w[0, k], mean0, atol=1e-6)
        assert torch.allclose(w[1, k], mean1, atol=1e-6)
    # class 2 had no embedding: untouched
    assert torch.equal(arc.weight.detach()[4:], before[4:])
    # each sample's cosine to its own class is now its best
    cos = arc.cosine(x)
    assert (cos[:, :2].argmax(dim=1) == labels).all()


def test_imprint_jitter_separates_sub_centres_reproducibly():
    x = torch.randn(12, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(12) % 4
    a, b = SubCenterArcFace(8, 4, subcenters=3), SubCenterArcFace(8, 4, subcenters=3)
    a.imprint(x, labels, jitter=0.1, seed=5)
    b.imprint(x, labels, jitter=0.1, seed=5)
    assert torch.equal(a.weight, b.weight)
    w = F.normalize(a.weight.detach(), dim=1).view(4, 3, 8)
    assert not torch.allclose(w[0, 0], w[0, 1])
    assert (w[0] @ w[0].T).min() > 0.95  # still near the class mean


def test_imprint_refuses_labels_out_of_range():
    arc = SubCenterArcFace(4, num_classes=2)
    with pytest.raises(ValueError, match="labels"):
        arc.imprint(torch.ones(1, 4), torch.tensor([2]))
