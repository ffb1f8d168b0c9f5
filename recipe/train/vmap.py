"""Seed members of one architecture trained together, as one vectorised model.

Squeeze's ensemble members are the same config with seeds ``seed .. seed + K - 1``: K models of one shape, each
with its own init, its own batch order and nothing shared. :func:`fit_members` stacks their parameters
(``torch.func.stack_module_state``) and runs the K forward/backward passes as one batched computation
(``torch.func.vmap`` over ``functional_call``), each member on its own seeded batch, with one optimiser over the
stacked tensors. The members' losses are summed, so each member's gradient is its own loss's gradient; SGD, Adam,
AdamW and RMSprop update every element on its own, so a stacked optimiser takes each member's own step; the
result is K models equal, to float rounding, to K separate :func:`recipe.fit.fit` runs of the same seeds (tested in
tests/train/test_vmap_members.py). Source: the PyTorch "model ensembling" tutorial (torch.func).

Limits, checked by :func:`vmappable`: models without their own member loss (TabM: vmap's loss would train the
members' mean prediction, not each member), without batch norm (a batch-norm layer's running statistics are
updated in place, which ``vmap`` cannot do per member), no gradient clipping (a global norm over the stacked
tensors would mix the members), no augmentation or dropout (their random draws come from one generator, so they
could not match the separate runs), no early stopping, no EMA weights or bf16 autocast (callbacks the vectorised
step does not run). No validation runs during the fit: members are judged
after training, as squeeze judges them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from recipe.train.callbacks.precise_bn import batch_norm_layers
from recipe.train.callbacks.schedule import build_scheduler
from recipe.train.optim import build_optimizer, loss_for_task
from recipe.train.utils import resolve_device

if TYPE_CHECKING:
    from recipe.config import RecipeConfig
    from recipe.data import DataBundle


def vmappable(cfgs: Sequence[RecipeConfig], model: nn.Module) -> str:
    """Why the members of ``cfgs`` (built like ``model``) cannot be trained as one vectorised model; "" when they
    can. They must differ only in their seed."""
    if len(cfgs) < 2:
        return "fewer than two members"
    first = cfgs[0].model_dump(exclude={"seed", "name"})
    if any(c.model_dump(exclude={"seed", "name"}) != first for c in cfgs[1:]):
        return "the members differ in more than their seed"
    c = cfgs[0]
    if getattr(model, "member_loss", None) is not None:
        return "the model trains several members inside itself with its own loss (TabM); vmap would train their mean"
    if batch_norm_layers(model):
        return "the model has batch norm (running statistics are updated in place, per member)"
    if c.trainer.grad_clip:
        return "gradient clipping (a global norm would mix the members)"
    if c.data.augment or c.model.dropout:
        return "augmentation or dropout (random draws would not match separate runs)"
    if c.budget.early_stopping or c.budget.max_steps or c.budget.time_limit_s:
        return "early stopping or a step/time limit (members would stop at different steps)"
    if c.trainer.ema_decay:
        return "EMA weights (trainer.ema_decay: a separate run hands back the averaged weights)"
    cuda = resolve_device(c.trainer.device).type == "cuda"
    if c.trainer.precision == "bf16" or (c.trainer.precision == "auto" and cuda):
        return "bf16 mixed precision (autocast is not applied inside the vectorised step)"
    if c.schedule.name == "plateau":
        return "a plateau schedule (it reads each member's validation loss)"
    return ""


def fit_members(cfgs: Sequence[RecipeConfig], data: DataBundle, epochs: int) -> list[nn.Module]:
    """Train the members ``cfgs`` (one config, different seeds) for ``epochs`` epochs as one vectorised model;
    returns one trained module per config, in order, in eval mode on the CPU.

    Each member is built as :func:`recipe.fit.build_for` builds it (seeded init, final bias from the data) and sees
    the batches its own separate run would (``data.batches("train", shuffle=True, seed=cfg.seed)``, reshuffled per
    epoch), under the config's optimiser and schedule.

    Raises ValueError when :func:`vmappable` says they cannot be trained together.
    """
    from torch.func import functional_call, stack_module_state, vmap

    from recipe.fit import build_for

    cfgs = list(cfgs)
    models = [build_for(c, data) for c in cfgs]
    why = vmappable(cfgs, models[0])
    if why:
        raise ValueError(f"members cannot be trained as one vectorised model: {why}")
    c0 = cfgs[0]
    device = resolve_device(c0.trainer.device)
    models = [m.to(device).train() for m in models]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    loss_fn = loss_for_task(data.task)

    def member_loss(p, b, x, y):
        return loss_fn(functional_call(base, (p, b), (x,)), y)

    batched_loss = vmap(member_loss, in_dims=(0, 0, 0, 0), randomness="different")
    batchers = [
        data.batches("train", batch_size=c.data.batch_size, shuffle=True, seed=c.seed, device=device) for c in cfgs
    ]
    opt = build_optimizer(c0.optim, params.values())
    spe = len(batchers[0])
    scheduler = build_scheduler(c0.schedule, opt, epochs * spe, spe)
    for epoch in range(epochs):
        for b in batchers:
            b.set_epoch(epoch)
        for batch in zip(*batchers, strict=True):
            x = torch.stack([xb for xb, _ in batch])
            y = torch.stack([yb for _, yb in batch])
            batched_loss(params, buffers, x, y).sum().backward()
            opt.step()
            scheduler.step()
            opt.zero_grad(set_to_none=True)
    out = []
    for i, m in enumerate(models):
        state = {k: v[i].detach().clone() for k, v in {**params, **buffers}.items()}
        m.load_state_dict(state)
        out.append(m.cpu().eval())
    return out


__all__ = ["fit_members", "vmappable"]
