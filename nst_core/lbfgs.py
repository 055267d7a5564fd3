"""L-BFGS for one image tensor: one loss-and-gradient evaluation per step, with a guard against bad steps.

torch.optim.LBFGS without a line search accepts every step, and its first step is tiny (1/|g|₁). With exact
gradients that is harmless; with a bf16 network the gradient carries ~7% rounding noise, so the first curvature
pair (two gradients a tiny step apart) is mostly noise and the next step overshoots: on tiger + The Starry
Night at 512 px the loss jumped 20x, and after 200 steps it was still 27% higher than the float32 run's.
This one (Nocedal & Wright, algorithms 7.4 and 7.5):
- takes a first step that moves the image by a set amount, so the first pair measures curvature, not noise;
- rejects a step whose loss rose by more than `max_rise` (a fraction): the image goes back and the next step
  tries the same direction shorter (quadratic backtracking), still one evaluation per step;
- keeps a pair only when it shows positive curvature, so the inverse-Hessian estimate stays positive definite;
- projects each point into the box (pixel values 0..1) and learns from the step actually taken.
The vector work stays on the device; its decisions read five numbers back at once (the loss, the slope, the step
length and two curvature products), one device-to-host read per step where torch's L-BFGS makes several. With
the closure's own read of its losses (nst_core/transfer.py) a step waits for the device twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import torch

Closure = Callable[[], torch.Tensor]  # recomputes the loss at the current image and leaves its gradient in .grad


class LBFGS:
    def __init__(
        self,
        image: torch.Tensor,
        *,
        history_size: int,
        first_step: float = 0.05,
        max_rise: float = 0.1,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if not image.requires_grad or not image.is_contiguous():
            raise ValueError("the image must be a contiguous leaf tensor that requires grad")
        self.image = image
        self.first_step = first_step  # largest change of any pixel on the first step
        self.max_rise = max_rise
        self.bounds = bounds
        self.pairs: deque[tuple[torch.Tensor, torch.Tensor, float]] = deque(maxlen=history_size)
        self._x: torch.Tensor | None = None  # the accepted point, its loss and gradient (flat)
        self._loss = float("inf")
        self._grad: torch.Tensor | None = None
        self._direction: torch.Tensor | None = None
        self._t: torch.Tensor | float = 1.0  # the step length to try along the direction
        self._rejected = 0  # consecutive rejections along the current direction

    @property
    def loss(self) -> float:
        """The loss at the accepted point: the image as it stands after `step`."""
        return self._loss

    def step(self, closure: Closure) -> bool:
        """One evaluation: True if the image moved (or, on the first call, was measured where it starts),
        False if the trial point was rejected and the image went back."""
        if self._x is None:
            loss, self._grad = self._evaluate(closure)
            self._loss = float(loss)
            self._x = self.image.detach().reshape(-1).clone()
            return True
        if self._direction is None:
            self._direction, self._t = self._next_direction()
        x_old, g_old, loss_old, direction = self._x, self._grad, self._loss, self._direction
        assert g_old is not None
        with torch.no_grad():
            trial = (x_old + self._t * direction).clamp_(*self.bounds)
            self.image.view(-1).copy_(trial)
        loss_t, grad = self._evaluate(closure)
        s, y = trial - x_old, grad - g_old
        # Everything the decisions below need, read from the device at once.
        loss, slope, t, ys, yy = torch.stack(
            [
                loss_t.float(),
                torch.dot(g_old, direction),
                torch.as_tensor(self._t, dtype=grad.dtype, device=grad.device),
                torch.dot(y, s),
                torch.dot(y, y),
            ]
        ).tolist()
        if not slope < 0:  # not downhill: the curvature pairs mislead; undo, and start over from the gradient
            self._undo(x_old)
            self.pairs.clear()
            self._direction = None
            return False
        if not loss <= loss_old + self.max_rise * abs(loss_old):  # also rejects NaN
            # Back to the accepted point; next time the same direction, shorter (the minimiser of the quadratic
            # through the old loss, its slope and the new loss, kept within a tenth to a half of the last try).
            self._undo(x_old)
            rise = loss - loss_old - t * slope  # > 0 here unless the loss is NaN
            shrink = -slope * t / (2 * rise) if rise > 0 else 0.1
            self._t = t * min(0.5, max(0.1, shrink))
            self._rejected += 1
            if self._rejected >= 3:  # the direction itself is bad: forget the history, restart from the gradient
                self.pairs.clear()
                self._direction, self._rejected = None, 0
            return False
        if ys > 1e-10 * yy:  # positive curvature along the step: keep the pair
            self.pairs.append((s, y, 1.0 / ys))
        self._x, self._grad, self._loss = trial, grad, loss
        self._direction, self._rejected = None, 0
        return True

    def restore(self) -> None:
        """Put the image back at the accepted point (after an evaluation was interrupted)."""
        if self._x is not None:
            self._undo(self._x)

    def _undo(self, x_old: torch.Tensor) -> None:
        with torch.no_grad():
            self.image.view(-1).copy_(x_old)

    def _evaluate(self, closure: Closure) -> tuple[torch.Tensor, torch.Tensor]:
        self.image.grad = None
        with torch.enable_grad():
            loss = closure()
        if self.image.grad is None:
            raise RuntimeError("the closure left no gradient on the image")
        grad = self.image.grad.detach().reshape(-1)
        self.image.grad = None  # the next backward makes a new tensor: this one is ours to keep
        return loss.detach(), grad

    def _next_direction(self) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The quasi-Newton direction -H·g by the two-loop recursion, and the step length to try along it."""
        grad = self._grad
        assert grad is not None
        if not self.pairs:
            # No curvature known yet: steepest descent, scaled so the largest pixel change is `first_step`.
            return -grad, self.first_step / grad.abs().max().clamp_min(1e-30)
        q = -grad
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * torch.dot(s, q)
            q.addcmul_(y, alpha, value=-1)
            alphas.append(alpha)
        s, y, _ = self.pairs[-1]
        q.mul_(torch.dot(s, y) / torch.dot(y, y))  # H0 = γI with γ = sᵀy / yᵀy, the usual scaling
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas)):
            beta = rho * torch.dot(y, q)
            q.addcmul_(s, alpha - beta)
        return q, 1.0
