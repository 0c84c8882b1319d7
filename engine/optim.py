"""SGD and Adam, the same updates as ``torch.optim.SGD`` and ``torch.optim.Adam(fused=True)``.

Why not torch.optim itself: its ``step`` and ``zero_grad`` import ``torch._dynamo`` on first use (for
``torch.compile``, which this engine never calls), and that import alone costs one to two seconds of
every run's start-up: the time in which the textbook's explosion should already be on screen. These
classes call the same kernels (``torch._foreach_add_``, ``torch._fused_adam_``) without the detour.
Their ``state_dict`` holds tensors and plain values only, so checkpoints stay ``weights_only``.
"""

from __future__ import annotations

import torch


class _Optimizer:
    def __init__(self, params, lr: float):
        self.params: list[torch.Tensor] = list(params)
        self.param_groups = [{"lr": float(lr)}]

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    def _with_grad(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pairs = [(p, p.grad) for p in self.params if p.grad is not None]
        return [p for p, _ in pairs], [g for _, g in pairs]

    def zero_grad(self, set_to_none: bool = False) -> None:
        if set_to_none:
            for p in self.params:
                p.grad = None
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            torch._foreach_zero_(grads)


class SGD(_Optimizer):
    """theta <- theta - lr * grad."""

    @torch.no_grad()
    def step(self) -> None:
        params, grads = self._with_grad()
        if params:
            torch._foreach_add_(params, grads, alpha=-self.lr)

    def state_dict(self) -> dict:
        return {"kind": "sgd", "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") not in (None, "sgd"):
            raise ValueError(f"an optimizer state of kind {state.get('kind')!r} cannot restore SGD")
        self.param_groups[0]["lr"] = float(state.get("lr", self.lr))


class Adam(_Optimizer):
    """Adam (Kingma & Ba) with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, bias correction."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr)
        self.betas, self.eps = betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # one step counter per tensor, as the fused kernel expects (float32 scalars on the device)
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        chosen = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not chosen:
            return
        params = [self.params[i] for i in chosen]
        steps = [self.steps[i] for i in chosen]
        torch._foreach_add_(steps, 1.0)
        torch._fused_adam_(params, [p.grad for p in params], [self.exp_avg[i] for i in chosen],
                           [self.exp_avg_sq[i] for i in chosen], [], steps, lr=self.lr, beta1=self.betas[0],
                           beta2=self.betas[1], weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)

    def state_dict(self) -> dict:
        return {"kind": "adam", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "exp_avg": list(self.exp_avg), "exp_avg_sq": list(self.exp_avg_sq), "steps": list(self.steps)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "adam":
            raise ValueError(f"an optimizer state of kind {state.get('kind')!r} cannot restore Adam")
        for name in ("exp_avg", "exp_avg_sq", "steps"):
            values = state[name]
            if len(values) != len(self.params) or any(
                    target.shape != value.shape for target, value in zip(getattr(self, name), values)):
                # e.g. a checkpoint whose cells held their weights in another layout: the weights load
                # by textbook name, but the moments are kept per parameter tensor
                raise ValueError("the optimizer state in the checkpoint does not fit this model's parameters")
            for target, value in zip(getattr(self, name), values):
                target.copy_(value)
        self.param_groups[0]["lr"] = float(state.get("lr", self.lr))


def make_optimizer(kind: str, params, lr: float) -> _Optimizer:
    return Adam(params, lr=lr) if kind == "adam" else SGD(params, lr=lr)
