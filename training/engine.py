"""The training loop: build a run from a :class:`TrainConfig`, train, evaluate, checkpoint.

One run lives in one folder: ``config.yaml`` (the resolved config), ``last.pt`` (the
resumable state, after every epoch), ``best.pt`` (the model with the best held-out mAP),
``log.csv`` (a row per epoch) and ``curves.png``. :func:`fit` with ``resume=True``
continues from ``last.pt`` at the next epoch and, with the same hardware and settings,
ends with the same weights as a run that was never interrupted: every epoch draws its
batches from ``(run.seed, epoch)`` and reseeds the global RNGs (augmentation, dropout)
from ``(run.seed, rank, epoch)``, so nothing depends on what happened before the epoch
beyond the checkpointed state.

Resuming with changed settings (``reid train --resume RUN schedule.epochs=N ...``): the
new config is compared with the one stored in ``last.pt``; the changed keys are named,
and keys that cannot change mid-run (:data:`training.config.FIXED_FOR_A_RUN`: the model,
the data source and split, the number of classes) are refused before anything is
loaded. ``schedule.epochs`` may grow (a finished run continues to epoch N) but not drop
below the epochs already done. The learning-rate schedule is then rebuilt rather than
restored: warm-up + cosine over ``global_step + remaining epochs × steps per epoch``
steps, continued from the step the run has reached, on the (possibly overridden) base
learning rates and weight decay; the AdamW moments are kept. For a run planned with N
epochs from the start this is the same schedule, so an unchanged resume stays
bit-identical; for a finished 1-epoch run continued to 3, the learning rate picks up
where a 3-epoch cosine would be after one epoch (it rises again from the old floor)
and decays to ``min_lr_ratio`` at epoch 3.

Mixed precision (``run.amp``: bf16, or fp16 with a gradient scaler) is used on CUDA
only; on CPU training runs in float32. Started by ``torchrun``, the same loop runs data
parallel (:mod:`training.distributed`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from reid.errors import ReidError
from reid.licence import Licence, combine, of_catalogue, of_release
from reid.model import EmbeddingModel, build_model
from reid.progress import progress_bar
from reid.splits import disjoint_split
from training.augment import fill_colour, train_transform
from training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from training.config import TrainConfig, config_to_dict, resume_changes, save_config
from training.curves import plot_curves, write_log
from training.data import (
    FlankDataset,
    ImageCache,
    cache_size,
    flank_identities,
    load_records,
    load_rehearsal,
)
from training.distributed import Dist, setup, teardown
from training.evaluation import evaluate_model
from training.losses import BatchHardTriplet, ReidLoss, SubCenterArcFace
from training.optim import build_optimizer, build_schedule, restore_optimiser
from training.sampler import MixedPKBatchSampler, PKBatchSampler

__all__ = ["Objective", "epoch_seed", "fit"]


class Objective(nn.Module):
    """Model and loss as one module, so one DistributedDataParallel wrapper averages the
    gradients of both (the ArcFace class weights live in the loss)."""

    def __init__(self, model: EmbeddingModel, loss: ReidLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        return self.loss(self.model(images), labels)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """A 32-bit seed for one rank's epoch, well mixed from the three numbers."""
    return int(np.random.SeedSequence([seed, rank, epoch + 1]).generate_state(1)[0])


def _seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    echo: Callable[[str], None] = print,
) -> dict:
    """Train according to ``cfg`` into the run folder ``out``; returns a summary
    (``run``, ``epochs``, ``best``, ``last``). ``resume`` continues from ``out/last.pt``."""
    d = setup(cfg.run.device)
    threads = torch.get_num_threads()
    if cfg.run.threads is not None:
        # On a shared CPU, OpenMP threads waiting for a busy core can slow tiny models
        # down a hundredfold: one thread per process is then much faster.
        torch.set_num_threads(cfg.run.threads)
    try:
        return _fit(cfg, Path(out), resume, d, echo if d.is_main else (lambda _: None))
    finally:
        torch.set_num_threads(threads)
        teardown(d)


def _fit(cfg: TrainConfig, out: Path, resume: bool, d: Dist, echo) -> dict:
    if cfg.optim.freeze_backbone and d.enabled:
        raise ReidError("optim.freeze_backbone (the neck stage) runs in one process: "
                        "start it with reid train, not torchrun")  # fmt: skip
    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume and not last_path.is_file():
        raise ReidError(f"{out}: no last.pt to resume from")
    if not resume and last_path.exists():
        raise ReidError(
            f"{out} already holds a training run: continue it with --resume {out}, "
            "or choose another --out"
        )
    if cfg.run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    state: dict | None = None
    if resume:
        # checked before anything slow is built: what changed, and whether it may
        state = load_checkpoint(last_path)
        changes = resume_changes(state.get("config", {}), cfg)
        done = int(state["epoch"])
        if cfg.schedule.epochs < done:
            raise ReidError(
                f"{out}: schedule.epochs={cfg.schedule.epochs}, but the run has already "
                f"completed {done} epochs: give schedule.epochs={done} or more"
            )
        if changes:
            echo(
                "resuming with changed settings: "
                + ", ".join(f"{k} {_plain(a)} -> {_plain(b)}" for k, a, b in changes)
            )
    _seed_globals(cfg.run.seed)  # the same initial weights on every rank
    show = d.is_main and cfg.run.progress

    # ---- the model (from a release when fine-tuning: its architecture replaces cfg.model)
    init_licence = None
    if cfg.run.init is not None and not resume:
        from reid.release import load_release, release_folder

        model, manifest = load_release(Path(cfg.run.init), for_inference=False)
        # The release fixes the architecture; the input size is not part of it (GeM
        # pooling takes any size), so a catalogue of other proportions may set its own.
        model.config = dataclasses.replace(model.config, input_size=cfg.model.input_size)
        cfg = dataclasses.replace(cfg, model=model.config)
        echo(f"starting from release {manifest.get('name')} ({cfg.run.init})")
        init_licence = of_release(release_folder(Path(cfg.run.init)))
    elif resume or cfg.run.init is not None:
        model = EmbeddingModel(dataclasses.replace(cfg.model, pretrained=None))
    else:
        model = build_model(cfg.model)
    model.train()

    # ---- data: rank 0 renders a missing synthetic catalogue and builds the disk cache
    if d.is_main:
        records = load_records(cfg.data, workers=cfg.data.workers, show_progress=show)
        rehearsal = load_rehearsal(cfg.data, workers=cfg.data.workers, show_progress=show)
    d.barrier()
    if not d.is_main:
        records = load_records(cfg.data, generate=False)
        rehearsal = load_rehearsal(cfg.data, generate=False)
    split = disjoint_split(records, cfg.data.train_ratio, cfg.data.split_seed)
    train_records, labels, classes = flank_identities(split.train, cfg.data.unsided_flanks)
    if not train_records:
        raise ReidError(
            "no training image has an individual and a side (left or right); for a catalogue "
            "whose identities are single flanks of unknown side set data.unsided_flanks=true"
        )
    n_main, n_main_classes = len(train_records), len(classes)
    if rehearsal:  # its flanks are extra classes, after the catalogue's
        r_records, r_labels, r_classes = flank_identities(rehearsal, cfg.data.unsided_flanks)
        train_records = train_records + r_records
        labels = np.concatenate([labels, r_labels + n_main_classes])
        classes = classes + [(f"rehearsal:{i}", s) for i, s in r_classes]
    mc = cfg.model
    cache = ImageCache(
        train_records,
        cache_size(mc.input_size, cfg.data.cache_scale),
        fill_colour(mc.mean),
        cfg.data.cache_dir,
    )
    images = None
    for turn in ("main", "others") if cache.folder is not None else ("all",):
        if turn == "all" or (turn == "main") == d.is_main:
            with progress_bar(len(train_records), "decoding", enabled=show) as advance:
                images = cache.load(cfg.data.workers, advance)
        if turn == "main":
            d.barrier()
    dataset = FlankDataset(
        images,
        labels,
        len(classes),
        train_transform(cfg.augment, mc.input_size, mc.mean, mc.std),
        cfg.augment.flip_as_new_identity,
    )
    source = cfg.data.manifest or f"synthetic preset {cfg.data.synthetic}"
    extra = ""
    if rehearsal:
        extra = (f"; rehearsal: {len(train_records) - n_main} images of "
                 f"{len(classes) - n_main_classes} flanks of synthetic preset "
                 f"{cfg.data.rehearsal}")  # fmt: skip
    # the terms the weights inherit: the starting release's and the data's (a resumed run
    # keeps those its checkpoint recorded)
    resumed_licence = None if state is None else Licence.from_dict(state.get("licence"))
    licence = combine(init_licence, of_catalogue(cfg.data.manifest), resumed_licence)
    training_data = (
        f"{source}: {n_main} images of {n_main_classes} flanks of "
        f"{len(split.known)} individuals ({len(split.unknown)} more held out for evaluation)"
        + extra
    )
    if cfg.optim.freeze_backbone:
        from training.neck import fit_neck

        if d.is_main:
            save_config(cfg, out / "config.yaml")
        return fit_neck(
            model,
            dataset,
            split.test,
            cfg,
            out,
            state=state,
            device=d.device,
            show=show,
            echo=echo,
            common={
                "config": config_to_dict(cfg),
                "classes": [list(c) for c in classes],
                "training_data": training_data,
                "licence": None if licence is None else licence.to_dict(),
            },
        )
    try:
        if rehearsal:
            n = len(train_records)
            items = np.arange(len(dataset.labels))
            is_main = (items % n) < n_main  # flipped items follow the originals
            sampler = MixedPKBatchSampler(
                dataset.labels,
                [(items[is_main], cfg.sampler.identities),
                 (items[~is_main], cfg.sampler.rehearsal_identities)],  # fmt: skip
                cfg.sampler.images,
                seed=cfg.run.seed,
                batches_per_epoch=cfg.sampler.batches_per_epoch,
                rank=d.rank,
                world_size=d.world_size,
            )
        else:
            sampler = PKBatchSampler(
                dataset.labels,
                cfg.sampler.identities,
                cfg.sampler.images,
                seed=cfg.run.seed,
                batches_per_epoch=cfg.sampler.batches_per_epoch,
                rank=d.rank,
                world_size=d.world_size,
            )
    except ValueError as e:
        raise ReidError(str(e)) from None
    p = f"{cfg.sampler.identities}"
    if rehearsal:
        p = f"({p}+{cfg.sampler.rehearsal_identities})"
    batch = f"{p}x{cfg.sampler.images}"
    echo(
        f"train: {n_main} images of {n_main_classes} flanks "
        f"({len(split.known)} individuals){extra}; held out: {len(split.test)} images of "
        f"{len(split.unknown)} individuals; {len(sampler)} batches of {batch} per epoch"
        + (f" on each of {d.world_size} ranks" if d.enabled else "")
    )

    # ---- loss, optimiser, schedule, precision
    loss = ReidLoss(
        SubCenterArcFace(
            model.embedding_dim,
            dataset.num_classes,
            cfg.loss.subcenters,
            cfg.loss.scale,
            cfg.loss.margin,
        ),
        BatchHardTriplet(cfg.loss.triplet_margin),
        cfg.loss.arcface_weight,
        cfg.loss.triplet_weight,
    )
    if cfg.loss.imprint and not resume:
        n = _imprint(model, loss.arcface, dataset, cfg, d, show)
        echo(f"class weights imprinted from the mean embeddings of {n} flanks")
    # channels_last from the start: much faster convolutions on CPU, and the format
    # reid.embed's inference switches the model to, so evaluating between epochs does
    # not change the numerics of the epochs after it (resumed runs stay bit-identical)
    objective = Objective(model, loss).to(d.device, memory_format=torch.channels_last)
    optimizer = build_optimizer(model, loss, cfg.optim)
    steps_per_epoch = len(sampler)
    history, best = [], None
    # steps done + steps to do: epochs × steps per epoch for a run that keeps its plan
    # (fresh, or resumed unchanged); see the module docstring for a changed plan
    scheduler, start_epoch, step = build_schedule(optimizer, cfg.schedule, steps_per_epoch, state)
    amp_dtype = None
    if d.device.type == "cuda" and cfg.run.amp != "off":
        amp_dtype = torch.bfloat16 if cfg.run.amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)

    # ---- state
    class_names = [list(c) for c in classes]
    if state is not None:
        if state.get("classes") != class_names:
            raise ReidError(
                f"{last_path}: the catalogue's training flanks differ from the run's "
                "(the data changed since the run started): start a new run instead"
            )
        model.load_state_dict(state["model"])
        loss.load_state_dict(state["loss"])
        restore_optimiser(optimizer, scheduler, state["optimizer"], state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, best = list(state["history"]), state["best"]
        restore_rng(state["rng"])
        del state  # the optimiser moments are copied; do not keep a second copy around
        echo(f"resuming {out} after epoch {start_epoch}")
        if start_epoch >= cfg.schedule.epochs:
            echo(
                f"the run has finished its {start_epoch} epochs: nothing to train "
                f"(give schedule.epochs=N to continue it to epoch N)"
            )
    if d.is_main:  # on resume too: overrides (e.g. more epochs) are part of the run now
        save_config(cfg, out / "config.yaml")
    d.barrier()
    train_step = objective
    if d.enabled:
        device_ids = [d.device.index] if d.device.type == "cuda" else None
        train_step = DistributedDataParallel(objective, device_ids=device_ids)

    config_dict = config_to_dict(cfg)  # plain data; its "model" entry is ModelConfig.to_dict()
    epochs = cfg.schedule.epochs
    for epoch in range(start_epoch, epochs):
        seed = epoch_seed(cfg.run.seed, d.rank, epoch)
        _seed_globals(seed)
        sampler.set_epoch(epoch)
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=cfg.data.workers,
            generator=torch.Generator().manual_seed(seed),
            pin_memory=d.device.type == "cuda",
        )
        with tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            unit="batch",
            disable=not show,
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            row = _train_one_epoch(
                train_step, loader, optimizer, scheduler, scaler, amp_dtype, cfg, d, bar
            )
        step += steps_per_epoch
        row = {"epoch": epoch + 1, "step": step, **row}
        last_epoch = epoch + 1 == epochs
        if d.is_main and ((epoch + 1) % cfg.eval.every == 0 or last_epoch):
            with progress_bar(len(split.test), "evaluating", enabled=show) as advance:
                row.update(
                    evaluate_model(
                        model,
                        split.test,
                        batch_size=cfg.eval.batch_size,
                        workers=cfg.data.workers,
                        device=d.device,
                        progress=advance,
                    )
                )
        history.append(row)
        if d.is_main:
            improved = _is_better(row, best)
            if improved:
                best = {"epoch": row["epoch"], "mAP": row["mAP"], "top1": row["top1"]}
            common = {
                "model": model.state_dict(),
                "config": config_dict,
                "metrics": {k: row[k] for k in _METRICS if k in row},
                "epoch": epoch + 1,
                "classes": class_names,
                "training_data": training_data,
                "licence": None if licence is None else licence.to_dict(),
            }
            if improved:
                save_checkpoint(common, best_path)
            save_checkpoint(
                {
                    **common,
                    "loss": loss.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "global_step": step,
                    "rng": capture_rng(),
                    "history": history,
                    "best": best,
                },
                last_path,
            )
            write_log(history, out / "log.csv")
            plot_curves(history, out / "curves.png")
            echo(_summary(row, epochs, improved))
        d.barrier()
    return {
        "run": str(out),
        "epochs": epochs,
        "best": best,
        "last": history[-1] if history else None,
    }


@torch.no_grad()
def _imprint(
    model: EmbeddingModel, arcface: SubCenterArcFace, dataset: FlankDataset, cfg, d: Dist, show
) -> int:
    """Embed every training image (not augmented) and imprint the ArcFace sub-centres.

    The embeddings are taken in training mode (batch statistics in the normalisation
    layers, batches in a seeded random order), because that is what the loss sees: the
    fresh neck's running statistics are still at their initial values, and eval-mode
    vectors would point elsewhere. Rank 0 computes; the weights are then broadcast so
    that every rank starts alike.
    """
    from torchvision.transforms import v2

    mc = cfg.model
    prep = v2.Compose(
        [
            v2.Resize(tuple(mc.input_size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mc.mean), list(mc.std)),
        ]
    )
    n = 0
    if d.is_main:
        model.to(d.device).train()
        total = len(dataset)
        order = torch.randperm(total, generator=torch.Generator().manual_seed(cfg.run.seed))
        feats = torch.empty(total, model.embedding_dim)
        batch = max(2, cfg.sampler.identities * cfg.sampler.images)
        with progress_bar(total, "imprinting", enabled=show) as advance:
            for start in range(0, total, batch):
                idx = order[start : start + batch]
                x = torch.stack([prep(dataset.image(int(i))) for i in idx]).to(
                    d.device, memory_format=torch.channels_last
                )
                feats[idx] = model(x).float().cpu()
                advance(len(idx))
        labels = torch.as_tensor(dataset.labels)
        n = arcface.imprint(feats, labels, seed=cfg.run.seed)
    if d.enabled:
        import torch.distributed as dist

        weight = arcface.weight.data.to(d.device)
        dist.broadcast(weight, src=0)
        arcface.weight.data.copy_(weight.to(arcface.weight.device))
    return n


def _train_one_epoch(train_step, loader, optimizer, scheduler, scaler, amp_dtype, cfg, d, bar):
    """One pass over the sampler's batches; returns mean losses, lr, throughput."""
    train_step.train()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    sums = {"loss": 0.0, "arcface": 0.0, "triplet": 0.0}
    n_batches = n_images = 0
    started = time.perf_counter()
    for images, labels in loader:
        images = images.to(d.device, memory_format=torch.channels_last, non_blocking=True)
        labels = labels.to(d.device, non_blocking=True)
        with torch.autocast(d.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            total, parts = train_step(images, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if cfg.optim.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if not math.isfinite(total.item()):
            raise ReidError(
                "the training loss is not finite: lower optim.lr, or set run.amp=bf16/off"
            )
        sums["loss"] += total.item()
        for k, v in parts.items():
            sums[k] += v.item()
        n_batches += 1
        n_images += len(labels) * d.world_size
        rate = n_images / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{sums['loss'] / n_batches:.3f}", img_s=f"{rate:.1f}")
        bar.update(1)
    seconds = time.perf_counter() - started
    lrs = {g.get("name", "head"): g["lr"] for g in optimizer.param_groups}
    return {
        **{k: v / max(n_batches, 1) for k, v in sums.items()},
        "lr": lrs.get("head", math.nan),
        "backbone_lr": lrs.get("backbone", math.nan),
        "images_per_s": n_images / seconds if seconds > 0 else math.nan,
        "seconds": seconds,
    }


#: What a checkpoint's ``metrics`` holds (and ``reid export`` copies into a release);
#: the whole row of every epoch is in ``history`` and log.csv.
_METRICS = ("epoch", "top1", "top5", "mAP", "queries", "loss")


def _score(row: dict) -> float:
    m = row.get("mAP")
    return -math.inf if m is None or math.isnan(m) else float(m)


def _is_better(row: dict, best: dict | None) -> bool:
    if "mAP" not in row:
        return False
    return best is None or _score(row) > _score(best)


def _plain(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _summary(row: dict, epochs: int, improved: bool) -> str:
    text = (
        f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f} (arcface {row['arcface']:.4f}, "
        f"triplet {row['triplet']:.4f})  {row['images_per_s']:.1f} img/s"
    )
    if "mAP" in row:
        text += f"  held-out top-1 {row['top1']:.3f} mAP {row['mAP']:.3f}"
        text += "  (best)" if improved else ""
    return text
