"""Knowledge distillation (Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural Network").

The student's training loss becomes ``alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(y)``,
where ``p^T`` are softmax outputs at temperature ``T``; the ``T^2`` keeps the soft term's gradients on the
scale of the hard term's as ``T`` changes. The teacher (e.g. an ensemble's averaged logits) is evaluated on
the very batch the student sees, so augmentation and shuffling need no bookkeeping. Validation keeps the
plain loss, so ``val/loss`` stays comparable with other runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from recipe.train.callbacks.base import Callback


def distillation_loss(
    student: Tensor, teacher: Tensor, y: Tensor, *, temperature: float, alpha: float, classifier: bool = True
) -> Tensor:
    """Scalar loss. Classification: (N, K) student and teacher logits, (N,) int64 labels, the soft term as in the
    module docstring. Regression: (N, 1) outputs and (N,) targets, ``alpha * MSE(student, teacher) + (1 - alpha) *
    MSE(student, y)`` (the teacher's predictions as soft targets; ``temperature`` unused)."""
    if not classifier:
        s = student.float().reshape(y.shape)
        return alpha * F.mse_loss(s, teacher.float().reshape(y.shape)) + (1 - alpha) * F.mse_loss(s, y.float())
    t = temperature
    soft = (
        F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True, reduction="batchmean")
        * t
        * t
    )
    return alpha * soft + (1 - alpha) * F.cross_entropy(student, y)


class Distill(Callback):
    """Args:
    teacher: maps an input batch (N, ...) to teacher logits (N, K); called under no_grad. Required.
    temperature: softening temperature T (> 0). Default 4.0.
    alpha: weight of the soft term in [0, 1]. Default 0.9.
    classifier: logits and class labels (True), or regression outputs and targets. Default True.
    """

    order = 15  # before the metrics read the loss

    def __init__(
        self, teacher: Callable[[Tensor], Tensor], temperature: float = 4.0, alpha: float = 0.9, classifier: bool = True
    ) -> None:
        if temperature <= 0 or not 0 <= alpha <= 1:
            raise ValueError(f"need temperature > 0 and alpha in [0, 1], got {temperature} and {alpha}")
        self.teacher, self.temperature, self.alpha, self.classifier = teacher, temperature, alpha, classifier

    def after_loss(self) -> None:
        t = self.trainer
        if not t.training:
            return
        with torch.no_grad():
            teacher_logits = self.teacher(t.xb).float()
        t.loss = distillation_loss(
            t.pred.float(),
            teacher_logits,
            t.yb,
            temperature=self.temperature,
            alpha=self.alpha,
            classifier=self.classifier,
        )
