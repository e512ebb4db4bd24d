"""The neck stage: refit the pooling, projection and batch norm of a model whose backbone
stays frozen (``optim.freeze_backbone: true``), from feature maps computed once.

Why: on the 2-core CPU a whole-network epoch over ATRW train with rehearsal takes about
five minutes at 192×288; with the backbone frozen, its feature maps are computed once
(one forward pass per training photo, and one per mirror when mirrored flanks are new
identities) and every epoch after that is a few seconds of matrix products. It is the
stage that makes a backbone moved by weight averaging usable: averaging v0.14's backbone
halfway back toward ImageNet's (``reid export blend ... --part backbone``) keeps features
that ImageNet knows and the tiger fine-tune forgot, but the old neck no longer fits them
(BENCHMARKS.md, "Default model").

What differs from the whole-network loop (:mod:`training.engine`):

- no image augmentation (the maps are computed once, from the photos letterboxed to the
  input size as inference does); instead each batch's maps are cut to a random window
  (at least :data:`MIN_WINDOW` of each side) and :data:`CELL_DROPOUT` of their cells are
  zeroed, so that the pooled vector cannot rely on any one place of the photo;
- batches are drawn uniformly from all training items (``sampler.identities +
  sampler.rehearsal_identities`` times ``sampler.images`` items a batch), not P×K, so the
  loss is ArcFace alone: the batch-hard triplet needs P×K batches (``loss.triplet_weight``
  must be 0);
- no data parallelism.

The run folder, checkpoints, held-out evaluation and ``reid export`` are as for any run;
``--resume`` recomputes the maps (deterministic) and continues from ``last.pt``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from reid.errors import ReidError
from reid.model import EmbeddingModel
from reid.progress import progress_bar
from training.checkpoint import capture_rng, restore_rng, save_checkpoint
from training.curves import plot_curves, write_log
from training.data import FlankDataset
from training.evaluation import evaluate_model
from training.losses import SubCenterArcFace
from training.optim import build_optimizer, build_schedule, restore_optimiser

__all__ = ["CELL_DROPOUT", "MIN_WINDOW", "augment_maps", "batch_bounds", "feature_maps", "fit_neck"]

#: share of a feature map's rows (and of its columns) that a training window keeps, at least
MIN_WINDOW = 0.6
#: share of a window's cells zeroed in training
CELL_DROPOUT = 0.15


@torch.no_grad()
def feature_maps(
    model: EmbeddingModel,
    dataset: FlankDataset,
    input_size: tuple[int, int],
    mean,
    std,
    device: torch.device,
    *,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """The frozen backbone's feature maps of every item of ``dataset`` (mirrored items
    mirrored), float16 on the CPU: (N, C, h, w). Cached images are resized to the input
    size (they are letterboxed already, a little larger for crop room)."""
    model.eval()
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)
    out: torch.Tensor | None = None
    n = len(dataset)
    for start in range(0, n, batch_size):
        idx = range(start, min(n, start + batch_size))
        x = torch.stack([dataset.image(i) for i in idx]).float().div_(255.0)
        if tuple(x.shape[-2:]) != tuple(input_size):
            x = F.interpolate(x, size=tuple(input_size), mode="bilinear", antialias=True,
                              align_corners=False)  # fmt: skip
        x = ((x - m) / s).to(device, memory_format=torch.channels_last)
        f = model.forward_features(x).float().cpu().half()
        if out is None:
            out = torch.empty((n, *f.shape[1:]), dtype=torch.float16)
        out[start : start + len(f)] = f
        if progress:
            progress(len(f))
    if out is None:
        raise ReidError("no training image to compute feature maps of")
    return out


def batch_bounds(n: int, batch: int) -> list[tuple[int, int]]:
    """(start, end) of each batch of an epoch over ``n`` items: ``batch`` items each, the
    last one possibly fewer, but never a lone item (a batch norm in training mode cannot
    normalise one): that one joins the batch before it."""
    bounds = [(s, min(n, s + batch)) for s in range(0, n, batch)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def augment_maps(maps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random window of the batch's maps (one window for the batch) with
    :data:`CELL_DROPOUT` of its cells zeroed (per map)."""
    h, w = maps.shape[-2:]

    def window(n: int) -> tuple[int, int]:
        keep = max(1, math.ceil(MIN_WINDOW * n))
        size = int(torch.randint(keep, n + 1, (1,), generator=generator))
        return int(torch.randint(0, n - size + 1, (1,), generator=generator)), size

    (y0, hh), (x0, ww) = window(h), window(w)
    out = maps[..., y0 : y0 + hh, x0 : x0 + ww].float()
    keep = torch.rand((out.shape[0], 1, hh, ww), generator=generator) >= CELL_DROPOUT
    return out * keep


def fit_neck(
    model: EmbeddingModel,
    dataset: FlankDataset,
    held_out,
    cfg,
    out: Path,
    *,
    state: dict | None,
    device: torch.device,
    show: bool,
    echo: Callable[[str], None],
    common: dict,
) -> dict:
    """Train the neck of ``model`` (backbone frozen) on ``dataset``'s items; evaluate on
    ``held_out`` records. ``common`` holds what every checkpoint carries besides the
    weights (config, classes, training data, licence); ``state`` a ``last.pt`` to resume."""
    if state is not None and state.get("classes") != common["classes"]:
        raise ReidError(
            f"{out / 'last.pt'}: the catalogue's training flanks differ from the run's "
            "(the data changed since the run started): start a new run instead"
        )
    last_path, best_path = out / "last.pt", out / "best.pt"
    mc = cfg.model
    if state is not None:  # the backbone too: a resumed run's model starts from nothing
        model.load_state_dict(state["model"])
    model.to(device)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    with progress_bar(len(dataset), "feature maps", enabled=show) as advance:
        started = time.perf_counter()
        maps = feature_maps(model, dataset, mc.input_size, mc.mean, mc.std, device,
                            batch_size=cfg.eval.batch_size, progress=advance)  # fmt: skip
    echo(
        f"neck stage: backbone frozen; feature maps of {len(dataset)} training items "
        f"{tuple(maps.shape[1:])} in {time.perf_counter() - started:.0f} s "
        f"({maps.numel() * 2 / 2**30:.2f} GiB)"
    )
    labels = torch.as_tensor(dataset.labels, dtype=torch.long)
    arcface = SubCenterArcFace(model.embedding_dim, dataset.num_classes, cfg.loss.subcenters,
                               cfg.loss.scale, cfg.loss.margin).to(device)  # fmt: skip
    batch = (cfg.sampler.identities + cfg.sampler.rehearsal_identities) * cfg.sampler.images
    batch = max(2, min(batch, len(dataset)))
    bounds = batch_bounds(len(dataset), batch)
    steps_per_epoch = len(bounds)
    echo(
        f"train: {len(dataset)} items of {dataset.num_classes} flanks (mirrors included); "
        f"held out: {len(held_out)} images; {steps_per_epoch} batches of {batch} maps per epoch"
    )
    if state is None and cfg.loss.imprint:
        model.train()  # batch statistics, as the loss sees them (see engine._imprint)
        with torch.no_grad():
            emb = torch.cat([
                model.forward_neck(maps[i : i + 256].float().to(device)).float().cpu()
                for i in range(0, len(maps), 256)
            ])  # fmt: skip
        n = arcface.imprint(emb.to(device), labels.to(device), seed=cfg.run.seed)
        echo(f"class weights imprinted from the mean embeddings of {n} flanks")
    optimizer = build_optimizer(model, arcface, cfg.optim)
    history, best = [], None
    scheduler, start_epoch, step = build_schedule(optimizer, cfg.schedule, steps_per_epoch, state)
    if state is not None:
        arcface.load_state_dict(state["loss"])
        restore_optimiser(optimizer, scheduler, state["optimizer"], state["scheduler"])
        history, best = list(state["history"]), state["best"]
        restore_rng(state["rng"])
        del state
        echo(f"resuming {out} after epoch {start_epoch}")
        if start_epoch >= cfg.schedule.epochs:
            echo(f"the run has finished its {start_epoch} epochs: nothing to train "
                 "(give schedule.epochs=N to continue it to epoch N)")  # fmt: skip
    params = [p for g in optimizer.param_groups for p in g["params"]]
    epochs = cfg.schedule.epochs
    for epoch in range(start_epoch, epochs):
        g = torch.Generator().manual_seed(cfg.run.seed * 1_000_003 + epoch)
        order = torch.randperm(len(dataset), generator=g)
        model.train()
        model.backbone.eval()
        sums, n_items, started = 0.0, 0, time.perf_counter()
        for start, end in bounds:
            idx = order[start:end]
            x = augment_maps(maps[idx], g).to(device)
            y = labels[idx].to(device)
            loss = cfg.loss.arcface_weight * arcface(model.forward_neck(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            if not math.isfinite(loss.item()):
                raise ReidError("the training loss is not finite: lower optim.lr")
            sums += loss.item() * len(idx)
            n_items += len(idx)
        step += steps_per_epoch
        seconds = time.perf_counter() - started
        row = {
            "epoch": epoch + 1, "step": step, "loss": sums / max(n_items, 1),
            "arcface": sums / max(n_items, 1), "triplet": 0.0,
            "lr": optimizer.param_groups[0]["lr"], "backbone_lr": 0.0,
            "images_per_s": n_items / seconds if seconds > 0 else math.nan,
            "seconds": seconds,
        }  # fmt: skip
        if (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == epochs:
            with progress_bar(len(held_out), "evaluating", enabled=show) as advance:
                row.update(evaluate_model(model, held_out, batch_size=cfg.eval.batch_size,
                                          workers=cfg.data.workers, device=device,
                                          progress=advance))  # fmt: skip
        history.append(row)
        improved = "mAP" in row and (best is None or _score(row) > _score(best))
        if improved:
            best = {"epoch": row["epoch"], "mAP": row["mAP"], "top1": row["top1"]}
        ckpt = {
            **common,
            "model": model.state_dict(),
            "metrics": {
                k: row[k] for k in ("epoch", "top1", "top5", "mAP", "queries", "loss") if k in row
            },  # fmt: skip
            "epoch": epoch + 1,
        }
        if improved:
            save_checkpoint(ckpt, best_path)
        save_checkpoint(
            {
                **ckpt,
                "loss": arcface.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": {},
                "global_step": step,
                "rng": capture_rng(),
                "history": history,
                "best": best,
            },  # fmt: skip
            last_path,
        )
        write_log(history, out / "log.csv")
        plot_curves(history, out / "curves.png")
        text = f"epoch {epoch + 1}/{epochs}  loss {row['loss']:.4f}"
        text += f"  {row['images_per_s']:.0f} maps/s"
        if "mAP" in row:
            text += f"  held-out top-1 {row['top1']:.3f} mAP {row['mAP']:.3f}"
            text += "  (best)" if improved else ""
        echo(text)
    return {"run": str(out), "epochs": epochs, "best": best,
            "last": history[-1] if history else None}  # fmt: skip


def _score(row: dict) -> float:
    m = row.get("mAP")
    return -math.inf if m is None or (isinstance(m, float) and math.isnan(m)) else float(m)
