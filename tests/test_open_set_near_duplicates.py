"""reid eval --open-set on video-like catalogues (ATRW): a query's near-duplicates are out
of its gallery, and a known query left with no other photo of its flank is not counted."""

import shutil
from dataclasses import replace

import torch

from reid.evaluate import evaluate_open_set
from reid.model import ModelConfig, build_model
from reid.release import save_release
from reid.synthetic.catalogue import write_catalogue

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)


def test_a_querys_own_copy_never_answers_it(tmp_path):
    records = write_catalogue(
        tmp_path / "cat", species=("leopard",), individuals=4, images_per_side=2, seed=3,
        workers=1,
    )  # fmt: skip
    # every photo gets an exact copy (a "next frame"): flanks of 2 + 2 photos
    copies = []
    for r in records:
        dup = tmp_path / "copies" / f"{r.individual_id}-{r.side}-{r.path.stem}.png"
        dup.parent.mkdir(exist_ok=True)
        shutil.copy(r.path, dup)
        copies.append(replace(r, path=dup))
    torch.manual_seed(0)
    release = save_release(build_model(TINY).eval(), tmp_path / "model", name="tiny",
                           training_data="none", metrics={})  # fmt: skip
    kw = dict(train_ratio=0.5, unknown_ratio=0.3, workers=1, show_progress=False)
    plain = evaluate_open_set([*records, *copies], release, **kw)
    assert plain["n_known"] > 0 and plain["queries_without_answer"] == 0
    strict = evaluate_open_set([*records, *copies], release, near_duplicates=True, **kw)
    # the same queries, less those whose only enrolled photos of their flank are copies
    assert strict["n_known"] + strict["queries_without_answer"] == plain["n_known"]
    assert strict["n_unknown"] == plain["n_unknown"]
    # an enrolled copy is found first (cosine 1); without copies a random tiny model is not
    assert plain["top1_known"] > strict["top1_known"]
