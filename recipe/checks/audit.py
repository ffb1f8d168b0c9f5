"""The model audit before training: can every parameter learn, is eval mode deterministic, does batch norm train?

Three bugs that no loss curve names: layers that never train (``requires_grad=False`` by mistake, parameters left
out of the optimiser, a graph cut by ``detach()``), randomness left on in eval mode (``F.dropout(h, 0.5)`` without
``training=self.training``, noise added unconditionally), and batch norm kept in eval mode while the model trains
(a ``train()`` override or ``.eval()`` in forward). Each shows up later only as a generic symptom -- a batch that
cannot be memorised, a loss that falls slowly, a fixed seed that does not reproduce -- so the audit looks at the
model itself, on one batch, before any training:

========================  ==========================================================================================
check                     experiment (:func:`measure`, one batch, no optimiser step, the model's state restored)
========================  ==========================================================================================
trainable_parameters      ``requires_grad`` of every parameter; the optimiser's param groups; ``.grad`` after one
                          forward/backward of the training loss in train mode; frozen parameters compared between
                          two builds with different seeds (they differ: a random init, which can never train)
eval_deterministic        two eval-mode forward passes on the same batch, compared; every random op called in them
                          (a ``TorchFunctionMode`` sees ``F.dropout(..., training=True)``, ``randn_like``, ...)
                          named with the module that called it; buffers an eval pass changed
batchnorm_train_mode      the ``training`` flag ``F.batch_norm`` receives in a train-mode forward pass: running
                          statistics used while training are named per layer
========================  ==========================================================================================

Source: the recipe's "gain trust" (seeds/004: "check that your network's parameters are all being trained", the
"no regularisation at eval" habit) and PyTorch's own contracts (``nn.Module.train``/``eval``, ``F.dropout``'s
``training=True`` default, ``torch.optim.Optimizer.param_groups``). Pure functions on a model and a batch: no
MLflow, no config; :func:`audit_model` runs the three.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from recipe.checks.base import CheckBuilder, Finding, names
from recipe.report import Verdict

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL

CHECKS = ("trainable_parameters", "eval_deterministic", "batchnorm_train_mode")
MAX_LISTED = 6  # layers (or calls) named in an observed text; the count says how many more
EVAL_TOL = 1e-5  # two eval passes may differ by this much (relative to the output's size) and still count as equal

# Ops that draw random numbers whatever the module's mode, and the dropout family, which does so when its
# ``training`` argument is true (F.dropout's default: the functional form does not know the module's mode).
RANDOM_OPS = frozenset(
    {
        "rand",
        "rand_like",
        "randn",
        "randn_like",
        "randint",
        "randint_like",
        "randperm",
        "normal",
        "normal_",
        "uniform_",
        "bernoulli",
        "bernoulli_",
        "multinomial",
        "poisson",
        "exponential_",
        "cauchy_",
        "log_normal_",
        "geometric_",
        "random_",
        "gumbel_softmax",
    }
)
DROPOUT_OPS = frozenset({"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout"})


@dataclass(frozen=True)
class Layer:
    """Parameters of one module that share a problem: its dotted name, its class and how many numbers they hold."""

    name: str
    kind: str
    count: int

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.count:,})"


@dataclass
class ModelAudit:
    """What :func:`measure` saw. Layer lists name modules whose parameters have the problem."""

    n_params: int  # every parameter (numbers, not tensors)
    frozen: list[Layer] = field(default_factory=list)  # requires_grad=False
    frozen_random: bool | None = None  # the frozen tensors differ between two seeds' builds (None: not compared)
    not_in_optimizer: list[Layer] = field(default_factory=list)  # requires grad, missing from every param group
    no_grad_called: list[Layer] = field(default_factory=list)  # the module ran, its parameters got no gradient
    no_grad_unused: list[Layer] = field(default_factory=list)  # the module never ran in forward
    eval_diff: float = 0.0  # max |out1 - out2| of two eval passes, relative to max |out1|
    eval_random: list[str] = field(default_factory=list)  # "F.dropout(p=0.5, training=True) in 'body'"
    eval_buffers: list[str] = field(default_factory=list)  # buffers an eval pass changed
    still_training: list[str] = field(default_factory=list)  # modules with training=True after model.eval()
    bn_layers: int = 0  # batch-norm calls seen in the train-mode pass
    bn_frozen: list[str] = field(default_factory=list)  # batch norm run on running statistics while training

    @property
    def frozen_count(self) -> int:
        return sum(x.count for x in self.frozen)


class _Calls(TorchFunctionMode):
    """Records random ops and batch-norm calls, each with the innermost module running when it was called."""

    def __init__(self, where: Callable[[], str]) -> None:
        super().__init__()
        self.where = where
        self.random: list[str] = []
        self.batch_norm: list[tuple[str, bool]] = []  # (module, training flag passed)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "rrelu":  # randomised leaky ReLU: random slopes when training=True (its default is False)
            if kwargs.get("training", False):
                self._add(f"F.rrelu(training=True) in {self.where()}")
        elif name in DROPOUT_OPS:
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            if kwargs.get("training", True) and p > 0:
                self._add(f"F.{name}(p={p:g}, training=True) in {self.where()}")
        elif name in RANDOM_OPS:
            self._add(f"{name} in {self.where()}")
        elif name == "batch_norm":
            self.batch_norm.append((self.where(), bool(kwargs.get("training", False))))
        return func(*args, **kwargs)

    def _add(self, text: str) -> None:
        if text not in self.random:
            self.random.append(text)


class _ModuleStack:
    """Forward hooks that keep the dotted name of the module running now, and the set of modules that ran."""

    def __init__(self, model: nn.Module) -> None:
        self.stack: list[str] = []
        self.ran: set[str] = set()
        self.handles = []
        self.root = root = f"{type(model).__name__}.forward"
        for name, m in model.named_modules():
            label = repr(name) if name else root
            self.handles.append(m.register_forward_pre_hook(lambda mod, a, label=label: self._enter(label)))
            self.handles.append(m.register_forward_hook(lambda mod, a, o, label=label: self._leave()))

    def _enter(self, label: str) -> None:
        self.stack.append(label)
        self.ran.add(label)

    def _leave(self) -> None:
        if self.stack:
            self.stack.pop()

    def where(self) -> str:
        return self.stack[-1] if self.stack else "the model's forward"

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def measure(
    model: nn.Module,
    xb: Tensor,
    yb: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    opt: torch.optim.Optimizer | None = None,
    *,
    rebuild: Callable[[int], nn.Module] | None = None,
) -> ModelAudit:
    """Audit ``model`` on one batch (``xb``: (N, ...) inputs, ``yb``: (N,) labels or (N, 1) targets, on the
    model's device) with the training loss ``loss_fn`` and ``opt`` (None: the optimiser is not checked).
    ``rebuild(seed)`` builds the same model with another seed; frozen parameters that differ between
    ``rebuild(0)`` and ``rebuild(1)`` are at a random init. Runs one train-mode forward/backward and two eval-mode
    forwards; the parameters, buffers, gradients and mode of ``model`` are as before afterwards."""
    params = dict(model.named_parameters())
    kinds = {name: type(m).__name__ for name, m in model.named_modules()}
    audit = ModelAudit(n_params=sum(p.numel() for p in params.values()))
    frozen = [n for n, p in params.items() if not p.requires_grad]
    audit.frozen = _layers(frozen, params, kinds)
    if frozen and rebuild is not None:
        audit.frozen_random = _differs(rebuild, frozen)
    if opt is not None:
        held = {id(p) for g in opt.param_groups for p in g["params"]}
        missing = [n for n, p in params.items() if p.requires_grad and id(p) not in held]
        audit.not_in_optimizer = _layers(missing, params, kinds)
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grads = {n: p.grad for n, p in params.items()}
    was_training = model.training
    hooks = _ModuleStack(model)
    try:
        _train_pass(model, xb, yb, loss_fn, params, kinds, hooks, audit)
        model.load_state_dict(state)  # the train pass moved batch-norm statistics
        _eval_passes(model, xb, hooks, audit)
    finally:
        hooks.remove()
        model.load_state_dict(state)
        for n, p in params.items():
            p.grad = grads[n]
        model.train(was_training)
    return audit


def _train_pass(model, xb, yb, loss_fn, params, kinds, hooks: _ModuleStack, audit: ModelAudit) -> None:
    model.train()
    for p in params.values():
        p.grad = None
    calls = _Calls(hooks.where)
    with calls:
        loss = loss_fn(model(xb), yb)
    if loss.requires_grad:
        loss.backward()
    audit.bn_layers = len(calls.batch_norm)
    audit.bn_frozen = list(dict.fromkeys(m for m, training in calls.batch_norm if not training))
    gradless = [n for n, p in params.items() if p.requires_grad and p.grad is None]
    ran = [n for n in gradless if (repr(_module(n)) if _module(n) else hooks.root) in hooks.ran]
    audit.no_grad_called = _layers(ran, params, kinds)
    audit.no_grad_unused = _layers([n for n in gradless if n not in ran], params, kinds)


def _eval_passes(model: nn.Module, xb: Tensor, hooks: _ModuleStack, audit: ModelAudit) -> None:
    model.eval()
    audit.still_training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    before = {k: v.detach().clone() for k, v in model.named_buffers()}
    calls = _Calls(hooks.where)
    with torch.no_grad(), calls:
        first = model(xb)
        second = model(xb)
    a, b = _tensor(first).float(), _tensor(second).float()
    same_nan = torch.isnan(a) & torch.isnan(b)  # a NaN output is another check's finding, not a difference
    diff = torch.where(same_nan, torch.zeros_like(a), (a - b).abs()).nan_to_num(nan=math.inf)
    scale = max(float(a.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).abs().max()) if a.numel() else 0.0, 1e-12)
    audit.eval_diff = float(diff.max()) / scale if a.numel() else 0.0
    audit.eval_random = calls.random
    audit.eval_buffers = [k for k, v in model.named_buffers() if k in before and not torch.equal(v, before[k])]


def _tensor(out) -> Tensor:
    """The first tensor of a model's output (a tensor, or a tuple/list/dict holding tensors)."""
    if isinstance(out, Tensor):
        return out.detach()
    values = out.values() if isinstance(out, dict) else out
    for v in values:
        if isinstance(v, Tensor):
            return v.detach()
    raise TypeError(f"the model returned {type(out).__name__}, not a tensor")


def _differs(rebuild: Callable[[int], nn.Module], frozen: list[str]) -> bool:
    a, b = dict(rebuild(0).named_parameters()), dict(rebuild(1).named_parameters())
    return any(n in a and n in b and not torch.equal(a[n].detach().cpu(), b[n].detach().cpu()) for n in frozen)


def _module(param: str) -> str:
    return param.rpartition(".")[0]


def _layers(param_names: Sequence[str], params: dict[str, Tensor], kinds: dict[str, str]) -> list[Layer]:
    """Parameters grouped by the module that owns them, in registration order."""
    grouped: dict[str, int] = {}
    for n in param_names:
        grouped[_module(n)] = grouped.get(_module(n), 0) + params[n].numel()
    return [Layer(m or "(the model itself)", kinds.get(m, "Parameter"), c) for m, c in grouped.items()]


# --- the verdicts --------------------------------------------------------------------------------------------

ADVICE = {
    "frozen_random": (
        "these layers never train and keep their random init, so everything after them learns from random "
        "features: remove the requires_grad=False (or the freezing loop) unless you load trained weights into "
        "them first (model.init_from, or your model's own loading)"
    ),
    "frozen_unknown": (
        "these layers never train: that is right for weights loaded from a trained model (fine-tuning the rest), "
        "and a bug otherwise -- remove the requires_grad=False"
    ),
    "not_in_optimizer": (
        "the optimiser never updates these parameters: build it from model.parameters() after the model is "
        "complete (layers added or replaced later, or created in forward, are missed)"
    ),
    "no_grad_called": (
        "these layers run in forward but receive no gradient: the graph is cut between them and the loss -- "
        "look for .detach(), torch.no_grad(), .data, .item() or a numpy round trip in forward"
    ),
    "no_grad_unused": "these layers are never called in forward: remove them, or call them where they were meant",
    "eval_random": (
        "the model draws random numbers in eval mode, so evaluation is noisy and a fixed seed cannot reproduce a "
        "run (validation consumes the random stream): pass training=self.training to functional dropout "
        "(F.dropout(h, p, training=self.training)) or use nn.Dropout, and add noise only under `if self.training:`"
    ),
    "eval_state": (
        "an eval pass changed the model's buffers ({buffers}): state updated in forward makes every prediction "
        "depend on the ones before; update it only in training"
    ),
    "eval_unexplained": (
        "eval outputs differ with no random op or buffer change seen: look for state kept between calls "
        "(attributes set in forward, caches) or a non-deterministic op (trainer.deterministic=true)"
    ),
    "bn_frozen": (
        "batch norm uses its running statistics while the model trains, so it does not normalise with the batch "
        "and its statistics never adapt: fine for a deliberately frozen pretrained backbone, otherwise remove the "
        ".eval() call in forward (or the train() override) that keeps these layers in eval mode"
    ),
}


def trainable_parameters(audit: ModelAudit) -> Finding:
    """FAIL when parameters cannot learn: frozen at a random init (or every parameter frozen), missing from the
    optimiser, or cut off from the loss's gradient although their module ran; WARN for frozen parameters whose init
    could not be compared, and for modules never called in forward. Frozen parameters that are the same in two
    seeds' builds (loaded weights) are fine-tuning: PASS, named."""
    check = CheckBuilder(
        "trainable_parameters",
        "every parameter can learn: it requires grad, the optimiser holds it, and one backward reaches it",
    )
    metrics = {
        "audit/params": float(audit.n_params),
        "audit/frozen_params": float(audit.frozen_count),
        "audit/gradless_params": float(sum(x.count for x in audit.no_grad_called + audit.no_grad_unused)),
    }
    expected = "every parameter trainable (or frozen with loaded weights)"
    problems: list[tuple[Verdict, str, str]] = []  # (verdict, observed part, advice)
    if audit.frozen:
        share = f"{audit.frozen_count:,} of {audit.n_params:,} parameters"
        listed = names(audit.frozen, MAX_LISTED)
        if audit.frozen_random or audit.frozen_count == audit.n_params:
            why = "at their random init (they differ between two builds with different seeds)"
            if audit.frozen_count == audit.n_params:
                why = "every parameter of the model"
            problems.append((FAIL, f"requires_grad=False on {share}, {why}: {listed}", ADVICE["frozen_random"]))
        elif audit.frozen_random is None:
            problems.append((WARN, f"requires_grad=False on {share}: {listed}", ADVICE["frozen_unknown"]))
    if audit.not_in_optimizer:
        listed = names(audit.not_in_optimizer, MAX_LISTED)
        problems.append((FAIL, f"not in the optimiser's param groups: {listed}", ADVICE["not_in_optimizer"]))
    if audit.no_grad_called:
        listed = names(audit.no_grad_called, MAX_LISTED)
        problems.append((FAIL, f"no gradient after one backward: {listed}", ADVICE["no_grad_called"]))
    if audit.no_grad_unused:
        listed = names(audit.no_grad_unused, MAX_LISTED)
        problems.append((WARN, f"never called in forward (no gradient): {listed}", ADVICE["no_grad_unused"]))
    if not problems:
        observed = f"all {audit.n_params:,} parameters require grad, are in the optimiser and get a gradient"
        if audit.frozen:
            observed = (
                f"{audit.frozen_count:,} of {audit.n_params:,} parameters frozen with the same weights in every "
                f"build (loaded, so fine-tuning the rest): {names(audit.frozen, MAX_LISTED)}; the rest learn"
            )
        return check(PASS, observed, expected, metrics=metrics)
    verdict = Verdict.worst([v for v, _, _ in problems])
    return check(
        verdict, "; ".join(o for _, o, _ in problems), expected, " ".join(a for _, _, a in problems), metrics=metrics
    )


def eval_deterministic(audit: ModelAudit, tol: float = EVAL_TOL) -> Finding:
    """FAIL when two eval-mode passes on the same batch differ by more than ``tol`` (relative to the largest
    output), naming the cause: the random ops called in eval mode (functional dropout with training=True, noise),
    buffers the pass changed, modules still in training mode; no cause seen is said as such."""
    check = CheckBuilder(
        "eval_deterministic", "in eval mode the model is a fixed function: two passes on the same batch are equal"
    )
    metrics = {"audit/eval_max_rel_diff": audit.eval_diff if math.isfinite(audit.eval_diff) else 1e30}
    expected = f"identical outputs (relative difference ≤ {tol:g})"
    if audit.eval_diff <= tol:
        return check(PASS, f"two eval passes agree (largest relative difference {audit.eval_diff:.2g})", expected)
    observed = f"two eval passes on the same batch differ by up to {audit.eval_diff:.3g} of the largest output"
    advice = []
    if audit.eval_random:
        dropout = [r.startswith("F.") and "dropout" in r.split("(")[0] for r in audit.eval_random]
        cause = "functional dropout left on in eval" if all(dropout) else "noise left on in eval"
        if any(dropout) and not all(dropout):
            cause = "functional dropout and noise left on in eval"
        observed += f": {cause}: {names(audit.eval_random, MAX_LISTED)}"
        advice.append(ADVICE["eval_random"])
    if audit.still_training:
        observed += f"; still in training mode after model.eval(): {names(audit.still_training, MAX_LISTED)}"
        advice.append("a module stays in training mode after model.eval(): do not override train()/eval()")
    if audit.eval_buffers:
        observed += f"; buffers changed by an eval pass: {names(audit.eval_buffers, MAX_LISTED)}"
        advice.append(ADVICE["eval_state"].format(buffers=names(audit.eval_buffers, 3)))
    if not advice:
        observed += ": no random op, buffer change or module in training mode was seen"
        advice.append(ADVICE["eval_unexplained"])
    return check(FAIL, observed, expected, " ".join(advice), metrics=metrics)


def batchnorm_train_mode(audit: ModelAudit) -> Finding:
    """WARN when a batch-norm layer runs on its running statistics during a train-mode pass (kept in eval mode
    while the model trains), naming the layers; PASS otherwise (also without batch norm)."""
    check = CheckBuilder(
        "batchnorm_train_mode", "batch norm normalises with the batch's statistics while the model trains"
    )
    metrics = {"audit/batchnorm_frozen": float(len(audit.bn_frozen))}
    expected = "every batch-norm layer in training mode during training"
    if audit.bn_layers == 0:
        return check(PASS, "no batch norm in the model", expected, metrics=metrics)
    if not audit.bn_frozen:
        observed = f"{audit.bn_layers} batch-norm call(s), all with batch statistics in training"
        return check(PASS, observed, expected, metrics=metrics)
    observed = (
        f"batch norm left in eval mode during training (running statistics used): "
        f"{names(audit.bn_frozen, MAX_LISTED)} of {audit.bn_layers} batch-norm call(s)"
    )
    return check(WARN, observed, expected, ADVICE["bn_frozen"], metrics=metrics)


def audit_model(
    model: nn.Module,
    xb: Tensor,
    yb: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    opt: torch.optim.Optimizer | None = None,
    *,
    rebuild: Callable[[int], nn.Module] | None = None,
) -> list[Finding]:
    """The three audit findings (``CHECKS`` order) for ``model`` on one batch; arguments as :func:`measure`."""
    audit = measure(model, xb, yb, loss_fn, opt, rebuild=rebuild)
    return [trainable_parameters(audit), eval_deterministic(audit), batchnorm_train_mode(audit)]


def failed(error: str) -> list[Finding]:
    """The audit could not run (the model raised on the batch): trainable_parameters FAILs with the error, the
    other two are not judged."""
    out = [
        CheckBuilder("trainable_parameters", "the model can be audited on one training batch")(
            FAIL, f"the audit raised {error}", "a forward and backward pass on one batch", "fix the model's forward"
        )
    ]
    for name in CHECKS[1:]:
        out.append(CheckBuilder(name, "not judged")(PASS, "not judged: the audit could not run", "-"))
    return out


__all__ = [
    "CHECKS",
    "Layer",
    "ModelAudit",
    "audit_model",
    "batchnorm_train_mode",
    "eval_deterministic",
    "failed",
    "measure",
    "trainable_parameters",
]
