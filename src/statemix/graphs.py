"""Static-shape training and evaluation steps for K runs at once, captured in CUDA graphs where possible.

A training at MAD's shape is launch-bound: the eager step issues hundreds of tiny kernels. Here every step
has one shape, so it can be captured once and replayed with a single launch. The model takes tokens
`[K*B, T]` (rows `k*B .. k*B+B-1` belong to run k; K = 1 is a plain model) and returns logits `[K*B, T, V]`.

Shapes stay static through the last partial batch: each split gets one extra row (index N, targets all
IGNORE), and a short batch is padded with that row. Padded rows score nothing, so their loss and gradient
are exactly zero and each run's loss keeps MAD's weighting (sum over scored positions / their count).
AdamW runs with `capturable=True` and the learning rate as a device tensor the scheduler fills in place; the
step reads nothing back to the host, and losses, counts and predictions accumulate on the device.

Once captured, a step at MAD's shape is bound by its kernels' GPU time (unfused fp32 LayerNorms, casts and
strided copies; reports/benchmarks/profile_step.md), not by launches. `train.compile` puts torch.compile
under the capture to fuse them; a compiled step that fails to capture falls back to the plain model, graphed.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

IGNORE = -100
PATH_GRAPH, PATH_EAGER = "cuda_graph", "eager"


def use_graphs(mode: str, device: torch.device) -> bool:
    """`train.cuda_graphs` resolved: auto = on for CUDA, off elsewhere; 'on' without CUDA is an error."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"train.cuda_graphs: got {mode!r}; allowed: ['auto', 'on', 'off']")
    if mode == "on" and device.type != "cuda":
        raise ValueError(f"train.cuda_graphs: 'on' needs a CUDA device, got {device.type!r}; use 'auto' or 'off'")
    return mode != "off" and device.type == "cuda"


def make_optimizer(params, cfg, device: torch.device, graphed: bool) -> torch.optim.AdamW:
    """MAD's AdamW; fused on CUDA, and capturable with a device-tensor learning rate when graphed."""
    options = {"fused": True} if device.type == "cuda" else {}
    lr = cfg.lr
    if graphed:
        options["capturable"] = True
        lr = torch.tensor(cfg.lr, dtype=torch.float32, device=device)
    return torch.optim.AdamW(params, lr=lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
                             **options)


def compiled(model: torch.nn.Module) -> torch.nn.Module:
    """`model` under torch.compile for steps captured once per shape (`train.compile`): static shapes, so a
    second width or run count compiles its own graph instead of a dynamic one, and room for the graphs of
    every group and mode (train / eval) that one process holds."""
    import torch._dynamo

    dynamo = torch._dynamo.config
    dynamo.cache_size_limit = max(dynamo.cache_size_limit, 512)
    dynamo.accumulated_cache_size_limit = max(dynamo.accumulated_cache_size_limit, 4096)
    return torch.compile(model, dynamic=False)


def current_lr(optimizer):
    """The learning rate as the optimizer holds it (a device tensor when graphed: read it after the epoch)."""
    lr = optimizer.param_groups[0]["lr"]
    return lr.detach().clone() if isinstance(lr, torch.Tensor) else lr


def set_lr(optimizer, value: float) -> None:
    """Set every group's learning rate, in place when it is a device tensor (a captured step reads it)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


def batch_count(n: int, size: int, drop_last: bool) -> int:
    return n // size if drop_last and n >= size else -(-n // size)


def _padded(splits) -> tuple[torch.Tensor, torch.Tensor]:
    """The K runs' splits as `[K, N+1, T]` inputs and targets, row N the all-IGNORE padding row."""
    shapes = {tuple(s.inputs.shape) for s in splits}
    if len(shapes) != 1:
        raise ValueError(f"runs stepped together need splits of one shape; got {sorted(shapes)}")
    x = torch.stack([torch.cat([s.inputs, s.inputs[:1]]) for s in splits])
    y = torch.stack([torch.cat([s.targets, torch.full_like(s.targets[:1], IGNORE)]) for s in splits])
    return x, y


class Steps:
    """Training and evaluation steps for K runs sharing one model, optimizer and batch shape.

    Args:
        model: tokens `[K*B, T]` -> logits `[K*B, T, V]`. params: its parameters (leading dim K when K > 1).
        optimizer: AdamW over `params` (capturable when graphed). K: runs. trains: each run's train Split
        (one shape). cfg: the runs' TrainConfig.
        precision: "bf16" or "fp32". graphed: capture the steps in CUDA graphs (falls back on failure).
    """

    def __init__(self, model, params, optimizer, K: int, trains, cfg, device, precision: str, graphed: bool):
        self.model, self.params, self.optimizer, self.K = model, list(params), optimizer, K
        self.cfg, self.device, self.precision = cfg, device, precision
        self.graphed, self.path = graphed, PATH_GRAPH if graphed else PATH_EAGER
        self.n = len(trains[0])
        self.x, self.y = _padded(trains)
        B = cfg.batch_size
        self.runs = torch.arange(K, device=device)[:, None]
        self.idx = torch.full((K, B), self.n, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros(K, dtype=torch.float64, device=device)
        self.count = torch.zeros(K, dtype=torch.int64, device=device)
        self.finite = torch.ones(K, dtype=torch.bool, device=device)
        self.preds = torch.empty((K, self.n + 1, self.y.shape[-1]), dtype=torch.long, device=device)
        self.graph, self.evals, self.batches = None, {}, None
        # Each Steps captures on its own stream: cuBLAS keys its workspace by stream, and graphs captured on
        # one shared stream would share it, racing when a worker replays them side by side on their streams.
        self.capture_stream = torch.cuda.Stream(device) if graphed else None

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)
        return nullcontext()

    def _per_run_loss(self, logits, y):
        """Sum of cross entropy over each run's scored positions `[K]`, and the scored counts `[K]`."""
        per = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="none")
        return per.view(self.K, -1).sum(1), (y != IGNORE).view(self.K, -1).sum(1)

    def _clip(self) -> None:
        """Per-run gradient clipping: each run's global norm over its own slices, as clip_grad_norm_ alone."""
        grads = [p.grad for p in self.params if p.grad is not None]
        sq = torch.stack([g.float().reshape(self.K, -1).pow(2).sum(1) for g in grads]).sum(0)
        coef = (self.cfg.grad_clip / (sq.sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view([self.K] + [1] * (g.dim() - 1)).to(g.dtype) if g.dim() else coef[0].to(g.dtype))

    def _train_body(self) -> None:
        x, y = self.x[self.runs, self.idx], self.y[self.runs, self.idx]
        with self._autocast():
            logits = self.model(x.flatten(0, 1))
        total, scored = self._per_run_loss(logits, y)
        loss = total / scored.clamp(min=1)
        loss.sum().backward()
        if self.cfg.grad_clip > 0:
            self._clip()
        self.optimizer.step()
        loss = loss.detach()
        self.loss_sum += loss.double() * scored
        self.count += scored
        self.finite &= torch.isfinite(loss)
        self.preds[self.runs, self.idx] = logits.detach().argmax(-1).view(self.K, *self.idx.shape[1:], -1)

    def _snapshot(self):
        state = [t.detach().clone() for t in self.params]
        opt = {id(p): {k: v.detach().clone() for k, v in s.items() if isinstance(v, torch.Tensor)}
               for p, s in self.optimizer.state.items()}
        return state, opt

    def _restore(self, snapshot) -> None:
        state, opt = snapshot
        with torch.no_grad():
            for p, saved in zip(self.params, state):
                p.copy_(saved)
            for p, s in self.optimizer.state.items():
                for k, v in s.items():
                    if not isinstance(v, torch.Tensor):
                        continue
                    if id(p) in opt:
                        v.copy_(opt[id(p)][k])
                    else:
                        v.zero_()

    def _uncompile(self, what: str, err: Exception) -> bool:
        """After a failed capture: swap a torch.compile wrapper for the plain model (to be captured instead) and
        return True; False when the model was not compiled."""
        if not hasattr(self.model, "_orig_mod"):
            return False
        print(f"statemix: compiled {what} failed, capturing the uncompiled model: {err}", flush=True)
        self.model = self.model._orig_mod
        return True

    def _capture(self, body):
        """Warm `body` up on a side stream, undo what the warm-up changed, then capture it (None on failure)."""
        snapshot = self._snapshot()
        side = self.capture_stream
        side.wait_stream(torch.cuda.current_stream(self.device))
        try:
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.optimizer.zero_grad(set_to_none=True)
                    body()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._restore(snapshot)
            self.optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                body()
            torch.cuda.synchronize(self.device)
            return graph
        except Exception as err:  # a library kernel that cannot be captured: this arch runs eagerly
            torch.cuda.synchronize(self.device)
            self._restore(snapshot)
            if self._uncompile("step", err):
                self.path = f"{PATH_GRAPH} (compile failed: {type(err).__name__}: {err})"[:300]
                return self._capture(body)
            self.graphed, self.path = False, f"{PATH_EAGER} (capture failed: {type(err).__name__}: {err})"[:300]
            print(f"statemix: CUDA graph capture failed, running eagerly: {err}", flush=True)
            return None

    def begin_epoch(self, orders: torch.Tensor) -> int:
        """Lay out the epoch's batches from each run's shuffle `orders` `[K, N]`; returns the step count."""
        self.model.train()
        B = self.cfg.batch_size
        steps = batch_count(self.n, B, self.cfg.drop_last)
        pad = steps * B - self.n
        if pad > 0:
            orders = torch.cat([orders, orders.new_full((self.K, pad), self.n)], 1)
        self.batches = orders[:, :steps * B].view(self.K, steps, B).transpose(0, 1).contiguous()
        self.seen = orders[:, :min(steps * B, self.n)]
        self.loss_sum.zero_()
        self.count.zero_()
        self.finite.fill_(True)
        if self.graphed and self.graph is None:
            for group in self.optimizer.param_groups:
                if not isinstance(group["lr"], torch.Tensor):
                    group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=self.device)
            self.idx.copy_(self.batches[0])
            self.graph = self._capture(self._train_body)
        return steps

    def step(self, i: int) -> None:
        self.idx.copy_(self.batches[i])
        if self.graph is not None:
            self.graph.replay()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self._train_body()

    def end_epoch(self, lr: float) -> list[dict]:
        """Per-run accumulators of the epoch, as `Trainer.train_epoch` returns them (device tensors)."""
        steps = self.batches.shape[0]
        return [{"loss_sum": self.loss_sum[k], "count": self.count[k], "finite": self.finite[k], "steps": steps,
                 "lr": lr, "preds": self.preds[k][self.seen[k]], "targets": self.y[k][self.seen[k]]}
                for k in range(self.K)]

    def train_epoch(self, orders: torch.Tensor, lr: float) -> list[dict]:
        for i in range(self.begin_epoch(orders)):
            self.step(i)
        return self.end_epoch(lr)

    def evaluate(self, splits) -> list[dict]:
        """Per-run loss sums, counts and predictions over all of each run's split (one graph per split)."""
        key = tuple(id(s.inputs) for s in splits)
        if key not in self.evals:
            self.evals[key] = _Eval(self, splits)
        return self.evals[key].run()


class _Eval:
    """The evaluation step over one split for the K runs, captured once when graphed."""

    def __init__(self, steps: Steps, splits):
        self.s, self.n = steps, len(splits[0])
        self.x, self.y = _padded(splits)
        B, K, dev = steps.cfg.eval_batch_size, steps.K, steps.device
        count = batch_count(self.n, B, False)
        order = torch.cat([torch.arange(self.n, device=dev), torch.full((count * B - self.n,), self.n, device=dev)])
        self.batches = order.view(count, B)
        self.idx = self.batches[0].clone()
        self.loss_sum = torch.zeros(K, dtype=torch.float64, device=dev)
        self.preds = torch.empty((K, self.n + 1, self.y.shape[-1]), dtype=torch.long, device=dev)
        self.graph = None
        if steps.graphed:
            self.graph = self._capture()

    @torch.no_grad()
    def _body(self) -> None:
        s = self.s
        with s._autocast():
            logits = s.model(self.x[:, self.idx].flatten(0, 1))
        y = self.y[:, self.idx]
        total, _ = s._per_run_loss(logits, y)
        self.loss_sum += total.double()
        self.preds[:, self.idx] = logits.argmax(-1).view(s.K, self.idx.shape[0], -1)

    def _capture(self):
        side = self.s.capture_stream
        side.wait_stream(torch.cuda.current_stream(self.s.device))
        try:
            with torch.cuda.stream(side):
                self._body()
            torch.cuda.current_stream(self.s.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                self._body()
            torch.cuda.synchronize(self.s.device)
            return graph
        except Exception as err:
            torch.cuda.synchronize(self.s.device)
            if self.s._uncompile("evaluation", err):
                return self._capture()
            print(f"statemix: CUDA graph capture of evaluation failed, evaluating eagerly: {err}", flush=True)
            return None

    def run(self) -> list[dict]:
        self.s.model.eval()
        self.loss_sum.zero_()
        for batch in self.batches:
            self.idx.copy_(batch)
            if self.graph is not None:
                self.graph.replay()
            else:
                self._body()
        count = (self.y[:, :self.n] != IGNORE).flatten(1).sum(1)
        return [{"loss_sum": self.loss_sum[k], "count": count[k], "preds": self.preds[k, :self.n],
                 "targets": self.y[k, :self.n]} for k in range(self.s.K)]
