"""AdamW with one learning rate for the backbone and one for the neck and the loss, and
the learning-rate schedule: linear warm-up from 0, then cosine down to a floor."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from training.config import OptimConfig

__all__ = ["build_optimizer", "build_schedule", "restore_optimiser", "warmup_cosine"]


def build_optimizer(model: nn.Module, loss: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """Param groups ``backbone`` (``cfg.backbone_lr``) and ``head`` (the model's neck and
    the loss's class weights, ``cfg.lr``); with ``cfg.loss_lr`` the class weights are a
    group ``loss`` of their own. Parameters that do not require gradients (a frozen
    backbone) are left out. Biases, norm weights and GeM's exponent (1-D tensors) get no
    weight decay."""
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for module in (model, loss):
        for p in module.parameters():
            if not p.requires_grad:
                continue
            part = "backbone" if id(p) in backbone_ids else "head"
            if module is loss and cfg.loss_lr is not None:
                part = "loss"
            groups.setdefault((part, p.ndim > 1), []).append(p)
    param_groups = []
    for (part, decay), params in sorted(groups.items()):
        lr = {"backbone": cfg.backbone_lr, "loss": cfg.loss_lr, "head": cfg.lr}[part]
        wd = cfg.weight_decay if decay else 0.0
        param_groups.append({"params": params, "lr": lr, "weight_decay": wd, "name": part})
    return torch.optim.AdamW(param_groups)


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """The factor on each group's base lr at optimiser step ``step`` (0-based):
    ``(step + 1) / warmup_steps`` during warm-up, then cosine from 1 to ``min_ratio``."""
    total_steps = max(1, int(total_steps))
    warmup_steps = max(0, min(int(warmup_steps), total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        decay_steps = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / decay_steps)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return factor


def build_schedule(
    optimizer: torch.optim.Optimizer, schedule, steps_per_epoch: int, state: dict | None
) -> tuple[torch.optim.lr_scheduler.LambdaLR, int, int]:
    """(scheduler, epochs done, steps done) for a run of ``schedule.epochs`` epochs of
    ``steps_per_epoch`` steps, fresh or resumed from a checkpoint ``state`` (its
    ``epoch`` and ``global_step``): warm-up + cosine over the steps done plus the steps
    still to do, so an unchanged resumed run keeps its plan (see training.engine)."""
    start_epoch = step = 0
    if state is not None:
        start_epoch, step = int(state["epoch"]), int(state["global_step"])
    total_steps = step + (schedule.epochs - start_epoch) * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(
            total_steps,
            round(schedule.warmup_epochs * steps_per_epoch),
            schedule.min_lr_ratio,
        ),
    )
    return scheduler, start_epoch, step


def restore_optimiser(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    optimizer_state: dict,
    scheduler_state: dict,
) -> None:
    """Load a checkpoint's optimiser and scheduler states into the ones just built from
    the (possibly overridden) config, keeping the config's base learning rates and weight
    decay: the saved groups carry the old base lr, lr and weight decay, and the scheduler
    the old base lrs; put the config's back, with the lr of the rebuilt schedule at the
    step reached (for an unchanged config: exactly the saved values). The AdamW moments
    are kept."""
    base_lrs = list(scheduler.base_lrs)
    weight_decays = [g["weight_decay"] for g in optimizer.param_groups]
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    factor = scheduler.lr_lambdas[0]
    scheduler.base_lrs = base_lrs
    for group, base, decay in zip(optimizer.param_groups, base_lrs, weight_decays, strict=True):
        group["initial_lr"] = base
        group["weight_decay"] = decay
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
