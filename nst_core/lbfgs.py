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
On a GPU a step of a few milliseconds must not wait for the host: every decision above is taken on the device
(masks and `torch.where`, never a Python `if` on a tensor), so a step reads nothing back and the caller decides
when to read the accepted point's values. The history is two matrices, S and Y, in a ring, and the direction
comes from the compact form of the same inverse-Hessian estimate (Byrd, Nocedal and Schnabel 1994; N&W 7.2)
in a few matrix products, where the two-loop recursion launched ~7 small kernels per stored pair.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Recomputes the loss at the current image and leaves its gradient in .grad. It returns the loss, or a vector
# whose last entry is the loss: the whole vector is kept for the accepted point (`LBFGS.values`).
Closure = Callable[[], torch.Tensor]


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
        m, n, device = max(0, history_size), image.numel(), image.device
        self.history_size = m
        self._small = torch.float32 if device.type == "mps" else torch.float64  # the (m+1)² algebra
        # S and Y, one row a pair, with one row more than the history: the free row, where the next pair is
        # written whether it is kept or not (a device-chosen row: no masked copy of image-sized vectors).
        self._s = torch.zeros(m + 1, n, dtype=image.dtype, device=device)
        self._y = torch.zeros(m + 1, n, dtype=image.dtype, device=device)
        self._sy = torch.zeros(m + 1, m + 1, dtype=self._small, device=device)  # sᵢᵀyⱼ
        self._yy = torch.zeros(m + 1, m + 1, dtype=self._small, device=device)  # yᵢᵀyⱼ
        self._stamp = torch.full((m + 1,), -1, dtype=torch.long, device=device)  # insertion order; -1: empty
        self._free = torch.zeros(1, dtype=torch.long, device=device)  # an empty row
        self._count = torch.zeros((), dtype=torch.long, device=device)  # pairs ever kept
        self._x: torch.Tensor | None = None  # the accepted point, its loss, gradient and values (flat)
        self._loss = torch.full((), float("inf"), device=device)
        self._grad: torch.Tensor | None = None
        self._values: torch.Tensor | None = None
        self._direction = torch.zeros(n, dtype=image.dtype, device=device)
        self._t = torch.ones((), dtype=image.dtype, device=device)  # the step length to try along the direction
        self._fresh = torch.ones((), dtype=torch.bool, device=device)  # the next step needs a new direction
        self._rejected = torch.zeros((), dtype=torch.long, device=device)  # rejections along this direction
        self._moved = torch.ones((), dtype=torch.bool, device=device)

    @property
    def loss(self) -> float:
        """The loss at the accepted point (reads it from the device)."""
        return float(self._loss)

    @property
    def values(self) -> torch.Tensor:
        """What the closure returned at the accepted point, on the device (the image as it stands)."""
        assert self._values is not None, "step has not run yet"
        return self._values

    @property
    def moved(self) -> torch.Tensor:
        """A device bool: the last step moved the image (or, on the first, measured where it starts); False
        when its trial point was rejected and the image went back."""
        return self._moved

    @property
    def pairs(self) -> int:
        """How many curvature pairs the history holds now (reads it from the device)."""
        return int((self._stamp >= 0).sum())

    def step(self, closure: Closure) -> None:
        """One evaluation of the closure, every decision taken on the device; nothing is read back."""
        if self._x is None:
            values, self._grad = self._evaluate(closure)
            self._values, self._loss = values.clone(), values[-1].float().clone()
            self._x = self.image.detach().reshape(-1).clone()
            return
        x, g_old, loss_old = self._x, self._grad, self._loss
        assert g_old is not None and self._values is not None
        # The state is updated in place, so that a CUDA graph of one step can replay it (bench/gpu_bench.py).
        new_direction, new_t = self._next_direction()
        direction = torch.where(self._fresh, new_direction, self._direction, out=self._direction)
        del new_direction
        t = torch.where(self._fresh, new_t, self._t)
        with torch.no_grad():
            trial = torch.addcmul(x, direction, t).clamp_(*self.bounds)
            self.image.view(-1).copy_(trial)
        values, grad = self._evaluate(closure)
        loss = values[-1].float()
        s, y = trial - x, grad - g_old
        slope, ys, yy = torch.dot(g_old, direction), torch.dot(y, s), torch.dot(y, y)

        # Not downhill: the curvature pairs mislead; undo, and start over from the gradient.
        downhill = slope < 0
        # A rise past max_rise (or NaN): back to the accepted point; next time the same direction, shorter (the
        # minimiser of the quadratic through the old loss, its slope and the new loss, within 0.1 to 0.5 of t).
        rose = downhill & ~(loss <= loss_old + self.max_rise * loss_old.abs())
        rise = loss - loss_old - t * slope  # > 0 when it rose, unless the loss is NaN
        shrink = torch.where(rise > 0, -slope * t / (2 * rise), 0.1).clamp(0.1, 0.5)
        rejected = torch.where(rose, self._rejected + 1, self._rejected)
        give_up = rose & (rejected >= 3)  # the direction itself is bad: forget the history, restart
        accept = downhill & ~rose
        torch.where(accept, trial, x, out=x)
        torch.where(accept, grad, g_old, out=g_old)
        del trial, grad
        with torch.no_grad():
            self.image.view(-1).copy_(x)
        self._forget(~downhill | give_up)
        self._keep(s, y, accept & (ys > 1e-10 * yy))  # positive curvature along the step: keep the pair

        self._rejected.copy_(torch.where(accept | give_up, 0, rejected))
        self._fresh.copy_(~rose | give_up)
        self._t.copy_(t * shrink)
        self._loss.copy_(torch.where(accept, loss, loss_old))
        self._values.copy_(torch.where(accept, values, self._values))
        self._moved.copy_(accept)

    def restore(self) -> None:
        """Put the image back at the accepted point (after an evaluation was interrupted)."""
        if self._x is not None:
            with torch.no_grad():
                self.image.view(-1).copy_(self._x)

    def _evaluate(self, closure: Closure) -> tuple[torch.Tensor, torch.Tensor]:
        self.image.grad = None
        with torch.enable_grad():
            values = closure()
        if self.image.grad is None:
            raise RuntimeError("the closure left no gradient on the image")
        grad = self.image.grad.detach().reshape(-1)
        self.image.grad = None  # the next backward makes a new tensor: this one is ours to keep
        return values.detach().reshape(-1), grad

    def _forget(self, clear: torch.Tensor) -> None:
        self._stamp.masked_fill_(clear, -1)

    def _keep(self, s: torch.Tensor, y: torch.Tensor, keep: torch.Tensor) -> None:
        """Write (s, y) into the free row with its row and column of SᵀY and YᵀY; when `keep`, the row joins the
        history (the oldest pair leaving it when it is full) and another row becomes the free one."""
        free, m = self._free, self.history_size
        self._s.index_copy_(0, free, s[None])
        self._y.index_copy_(0, free, y[None])
        s_y = (self._s @ y).to(self._small)  # sᵢᵀy, the new pair's own included
        y_s = (self._y @ s).to(self._small)  # sᵀyⱼ
        y_y = (self._y @ y).to(self._small)
        for matrix, column, across in ((self._sy, s_y, y_s), (self._yy, y_y, y_y)):
            matrix.index_copy_(1, free, column[:, None])
            matrix.index_copy_(0, free, across[None, :])
        stamp = self._stamp
        stamp.index_copy_(0, free, torch.where(keep, self._count, -1).reshape(1))
        self._count.add_(keep.long())
        valid = stamp >= 0
        oldest = torch.where(valid, stamp, torch.iinfo(torch.long).max).argmin().reshape(1)
        stamp.index_copy_(0, oldest, torch.where(valid.sum() > m, -1, stamp.index_select(0, oldest)))
        self._free.copy_(stamp.argmin().reshape(1))  # an empty row: one always is, with m + 1 rows

    def _next_direction(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The quasi-Newton direction -H·g (a new tensor) and the step length to try along it; with no pairs,
        steepest descent scaled so that the largest pixel change is `first_step`.

        H = γI + [S γY] M [Sᵀ; γYᵀ] with M = [[R⁻ᵀ(D + γYᵀY)R⁻¹, -R⁻ᵀ], [-R⁻¹, 0]], R the upper triangle of
        SᵀY in the pairs' order, D its diagonal and γ = sᵀy / yᵀy of the newest pair: the matrix the two-loop
        recursion applies. Empty slots get a unit row in R and zeros elsewhere, so they add nothing; with none
        kept, γ = 1 and H = I."""
        grad = self._grad
        assert grad is not None
        t_steepest = (self.first_step / grad.abs().max().clamp_min(1e-30)).to(grad.dtype)
        valid = self._stamp >= 0
        order = torch.argsort(self._stamp)  # empty slots first, then oldest to newest
        sy, yy, ok = self._sy[order][:, order], self._yy[order][:, order], valid[order]
        both = ok[:, None] & ok[None, :]
        gamma = torch.where(valid.any(), sy[-1, -1] / yy[-1, -1], 1.0)  # the newest pair sorts last
        a = torch.where(ok, (self._s @ grad).to(self._small)[order], 0)[:, None]
        b = torch.where(ok, (self._y @ grad).to(self._small)[order], 0)[:, None]
        r = torch.where(both, sy.triu(), 0) + torch.diag((~ok).to(self._small))
        d = torch.diag(torch.where(ok, sy.diagonal(), 0))
        p = torch.linalg.solve_triangular(r, a, upper=True)
        q = torch.linalg.solve_triangular(r.T, (d + gamma * torch.where(both, yy, 0)) @ p - gamma * b, upper=False)
        on_s = torch.zeros_like(q[:, 0]).index_copy_(0, order, q[:, 0])
        on_y = torch.zeros_like(p[:, 0]).index_copy_(0, order, -gamma * p[:, 0])
        hg = self._s.T @ on_s.to(grad.dtype)
        hg.addmv_(self._y.T, on_y.to(grad.dtype)).addcmul_(grad, gamma.to(grad.dtype))
        return hg.neg_(), torch.where(valid.any(), 1.0, t_steepest)
