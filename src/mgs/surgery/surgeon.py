"""GradientSurgeon: per-domain gradient buffers, Gram-matrix surgery per group, one write pass.

Layout: every trainable parameter gets a slice ``[start, end)`` of one flat buffer per domain,
``buffers: [K, N]`` (N = number of trainable elements on this rank), with each group's parameters
contiguous, so a group's gradients are the view ``A_m = buffers[:, s_m:e_m]`` and its Gram matrix is
``A_m @ A_m.T``. Inside ``with surgeon.domain(d):`` each ``param.grad`` *is* a view into row ``d``,
so autograd (and DDP / FSDP2) accumulate straight into it: no per-step clones. ``apply()`` then

1. reads the buffers once to build the ``[M, K, K]`` Gram stack (all-reduced over shards under FSDP2),
2. computes the ``[M, K]`` combination coefficients for all groups at once (the aggregator),
3. writes ``grad_m = coef_m @ A_m`` into each parameter's ``.grad`` (one pass),

with global grad-norm clipping folded into the coefficients: ``|G|^2 = sum_m c_m^T Gram_m c_m`` is
known from the Gram matrices, so clipping costs no extra pass over the gradients.

Both passes are a handful of large batched ops whatever the number of groups: every parameter's
slice starts at a multiple of ``_CHUNK`` elements (zero padding in between), so the buffers are
the batch ``[B, K, _CHUNK]`` of blocks that never straddle two parameters. Step 1 is one ``bmm``
(per-block Gram matrices) plus segment sums per parameter, then per group in float64; step 3 is one
``bmm`` of per-block coefficients into one flat output whose slices are the ``param.grad``s. A
per-group / per-parameter Python loop of small kernels is much slower, worst of all on a busy CPU
where each multi-threaded kernel can wait for a descheduled thread. (Buffers of another dtype than
the parameters', e.g. bfloat16, take the per-group path with float32 Gram matrices.)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mgs.errors import ConfigError, unknown_name
from mgs.surgery import distributed as mgs_dist
from mgs.surgery import per_group
from mgs.surgery import state as surgeon_state
from mgs.surgery.aggregators import Aggregator, AggregatorLike, get_aggregator, random_orders
from mgs.surgery.groups import Granularity, Group, partition
from mgs.surgery.layout import Slot, buffer_layout
from mgs.surgery.stats import SurgeryStats

log = logging.getLogger(__name__)

# Elements per block of the batched passes: the padding costs at most this per parameter tensor.
_CHUNK = 512
_GRAIN = 32768  # at::internal::GRAIN_SIZE: smaller elementwise kernels run on one thread


@contextlib.contextmanager
def exact_fp32_matmul(device: torch.device) -> Iterator[None]:
    """IEEE float32 matmuls on CUDA inside the block, whatever TF32 setting the run chose (bf16
    mixed precision allows TF32 elsewhere): the Gram matrices and the write pass keep float32's
    24-bit mantissa. A no-op on other devices."""
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    name, exact = (
        ("fp32_precision", "ieee") if hasattr(matmul, "fp32_precision") else ("allow_tf32", False)
    )
    saved = getattr(matmul, name)
    setattr(matmul, name, exact)
    try:
        yield
    finally:
        setattr(matmul, name, saved)


class GradientSurgeon:
    """Per-domain gradients and their combination by a Gram-matrix aggregator, per group.

    Args:
        model: the module whose trainable parameters (``requires_grad``) are combined; frozen ones
            are ignored. A DDP- or FSDP2-wrapped module works as is.
        domains: domain names in a fixed order (the same on every rank).
        aggregator: a registered name (``"sum"``, ``"mean"``, ``"pcgrad"``, ``"upgrad"``, ...;
            ``available_aggregators()``), an :class:`Aggregator` object (e.g. ``CAGrad(c=0.2)``)
            or a callable ``(gram [M,K,K], active [K], orders [M,K,K-1]) -> (coef [M,K],
            fired [M,K])``. A registered name gives this surgeon its own fresh instance.
        granularity: ``"tensor"`` | ``"module"`` | ``"layer"`` | ``"global"`` or a callable
            ``(name, param) -> group key``.
        seed: seed of PCGrad's random orders (step ``t`` uses ``seed`` and ``t``; identical on all ranks).
        buffer_dtype: dtype of the per-domain buffers (default: the parameters' dtype). A dtype other
            than the parameters' (e.g. bfloat16 buffers for float32 params, to halve memory) costs one
            extra copy per domain, since autograd cannot accumulate into a grad of another dtype.
        check_ranks: under torch.distributed, verify in ``apply()`` that all ranks ran the same
            domains in the same order (one tiny all-reduce and one host sync per step).
    """

    def __init__(
        self,
        model: nn.Module,
        domains: Sequence[str],
        aggregator: str | AggregatorLike | type[Aggregator] = "pcgrad",
        granularity: Granularity = "tensor",
        seed: int = 0,
        buffer_dtype: torch.dtype | None = None,
        check_ranks: bool = True,
    ) -> None:
        domains = list(domains)
        if (
            not domains
            or len(set(domains)) != len(domains)
            or not all(isinstance(d, str) for d in domains)
        ):
            raise ConfigError(
                f"domains must be a non-empty list of distinct names, got {domains!r}"
            )
        self.domains = domains
        self.aggregator = get_aggregator(aggregator)
        self.seed = int(seed)
        self.check_ranks = check_ranks
        mgs_dist.reshard_fsdp(model)  # FSDP2: lay out the sharded parameters, not gathered ones
        groups, params = partition(model, granularity)
        self.groups: list[Group] = groups
        dtypes = {p.dtype for p in params.values()}
        self.buffer_dtype = buffer_dtype or (dtypes.pop() if len(dtypes) == 1 else torch.float32)
        # Batched passes (see _CHUNK) when every gradient has the buffers' dtype, float32/64.
        self._batched = self.buffer_dtype in (torch.float32, torch.float64) and all(
            p.dtype == self.buffer_dtype for p in params.values()
        )
        self._chunk = _CHUNK if self._batched else 1
        self._slots, self._bounds = buffer_layout(groups, params, self._chunk)
        first = self._slots[0].param
        devices = {mgs_dist.local_part(s.param).device for s in self._slots}
        if len(devices) > 1:
            raise ValueError(
                f"all trainable parameters must be on one device, found {sorted(map(str, devices))}"
            )
        self.device = devices.pop()
        self.numel = sum(s.end - s.start for s in self._slots)
        width = self._bounds[-1][1] if self._bounds else 0  # numel plus the chunk padding
        # [K, width]: one flat gradient buffer per domain (the only per-domain memory).
        self.buffers = torch.zeros(len(domains), width, dtype=self.buffer_dtype, device=self.device)
        self._alias = [s.param.dtype == self.buffer_dtype for s in self._slots]
        self._views = [[self._grad_view(k, s) for s in self._slots] for k in range(len(domains))]
        self._out: list[torch.Tensor | None] = [None] * len(self._slots)
        self._out_flat: torch.Tensor | None = None  # batched path: all combined grads, [width]
        self._scratch: tuple[torch.Tensor, torch.Tensor] | None = None
        if self._batched:
            chunks = [-(-(s.end - s.start) // self._chunk) for s in self._slots]
            self._num_chunks = width // self._chunk
            self._slot_chunks = torch.tensor(chunks, device=self.device)  # [S] chunks per slot
            self._group_sizes = torch.tensor(  # [M] slots per group
                [len(g.param_names) for g in groups], device=self.device
            )
            self._chunk_group = torch.repeat_interleave(  # [B] group of every chunk
                torch.tensor([s.group for s in self._slots]), torch.tensor(chunks)
            ).to(self.device)
            self._slot_sharded = torch.tensor([s.sharded for s in self._slots], device=self.device)
        self._shard_groups = (
            mgs_dist.shard_groups(first) if any(s.sharded for s in self._slots) else []
        )
        self._any_replicated = any(not s.sharded for s in self._slots)
        self._group_slots: list[list[Slot]] | None = None  # per-group path: each group's slots
        self._active: list[int] = []  # domain indices in the order their contexts were entered
        self._current: int | None = None
        self._dirty = set(range(len(domains)))
        self.step = 0
        self._warned_replaced = False

    # ------------------------------------------------------------------ layout

    def _grad_view(self, k: int, slot: Slot) -> torch.Tensor:
        local = self.buffers[k, slot.start : slot.end].view(slot.shape)
        return mgs_dist.wrap_like(slot.param, local)

    @property
    def group_names(self) -> list[str]:
        return [g.key for g in self.groups]

    # ------------------------------------------------------------------ accumulation

    def zero_grad(self) -> None:
        """Start a step: clear the domain buffers that were used and every ``param.grad``."""
        for k in sorted(self._dirty):
            self.buffers[k].zero_()
        self._dirty.clear()
        self._active.clear()
        for slot in self._slots:
            slot.param.grad = None

    @contextlib.contextmanager
    def domain(self, name: str) -> Iterator[None]:
        """Route every backward pass inside this block into domain ``name``'s buffer."""
        if name not in self.domains:
            raise unknown_name("domain", name, self.domains)
        if self._current is not None:
            raise RuntimeError(
                f"surgeon.domain({name!r}) entered inside surgeon.domain({self.domains[self._current]!r}); "
                "domain blocks cannot be nested"
            )
        k = self.domains.index(name)
        views = self._views[k]
        for i, slot in enumerate(self._slots):
            grad = slot.param.grad
            if grad is not None and not self._is_ours(i, grad):
                raise RuntimeError(
                    f"parameter {slot.name!r} already has a gradient that the surgeon did not create: "
                    "a backward pass ran outside `with surgeon.domain(...)`. Call surgeon.zero_grad() "
                    "at the start of each step and wrap every backward in a domain block."
                )
            slot.param.grad = views[i] if self._alias[i] else None
        self._current = k
        self._active.append(k)
        self._dirty.add(k)
        try:
            yield
        finally:
            self._collect(k)
            self._current = None

    def _is_ours(self, i: int, grad: torch.Tensor) -> bool:
        if grad is self._out[i] or any(grad is views[i] for views in self._views):
            return True
        # A wrapper may hand back a new Python object over the same storage.
        ptr = mgs_dist.local_part(grad).data_ptr()
        out = self._out[i]
        return (out is not None and mgs_dist.local_part(out).data_ptr() == ptr) or any(
            mgs_dist.local_part(views[i]).data_ptr() == ptr for views in self._views
        )

    def _collect(self, k: int) -> None:
        """After a domain block: make sure its gradients ended up in row ``k``."""
        for i, slot in enumerate(self._slots):
            grad = slot.param.grad
            if grad is None:
                continue
            view = self._views[k][i]
            if grad is view:
                continue
            local = mgs_dist.local_part(grad)
            if self._alias[i] and local.data_ptr() == mgs_dist.local_part(view).data_ptr():
                continue
            if self._alias[i] and not self._warned_replaced:
                log.warning(
                    "a wrapper replaced param.grad during backward (e.g. DDP with "
                    "gradient_as_bucket_view=True); the surgeon copies gradients instead, which costs "
                    "one extra pass per domain"
                )
                self._warned_replaced = True
            self.buffers[k, slot.start : slot.end].add_(local.reshape(-1))
            slot.param.grad = None

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The step (which seeds the random orders) and the aggregator's state, as tensors and
        plain values: ``torch.load(path, weights_only=True)`` reads it back."""
        return surgeon_state.state_of(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (same domains and number of groups: checked)."""
        surgeon_state.restore(self, state)

    # ------------------------------------------------------------------ surgery

    @torch.no_grad()
    def apply(self, max_norm: float | None = None) -> SurgeryStats:
        """Combine the domain gradients into ``param.grad`` for the optimizer; return the stats.

        Args:
            max_norm: if given, the combined gradient is scaled so that its global L2 norm is at
                most ``max_norm`` (same rule as ``torch.nn.utils.clip_grad_norm_``), at no extra cost.
        """
        if self._current is not None:
            raise RuntimeError("surgeon.apply() called inside a surgeon.domain(...) block")
        if self.check_ranks and mgs_dist.world_size() > 1:
            mgs_dist.check_rank_agreement(self._signature(), "the domains run (and their order)")
        with exact_fp32_matmul(self.device):  # a run may allow TF32: the surgery stays float32
            return self._apply(max_norm)

    def _apply(self, max_norm: float | None) -> SurgeryStats:
        num_domains, num_groups = len(self.domains), len(self._bounds)
        gram = self._gram()  # [M, K, K] float64
        active = torch.zeros(num_domains, dtype=torch.bool)
        active[sorted(set(self._active))] = True
        active = active.to(gram.device)
        sq = torch.diagonal(gram, dim1=1, dim2=2)  # [M, K]
        finite = torch.isfinite(sq).all(0)  # [K]
        nonfinite = active & ~finite
        usable = active & finite
        pair_ok = usable[:, None] & usable[None, :]
        gram = torch.where(pair_ok[None], gram, 0.0)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        orders = random_orders(num_groups, num_domains, generator).to(gram.device)
        coef, fired = self.aggregator(gram, usable, orders)  # [M, K], [M, K]
        coef = torch.where(usable[None, :], coef, 0.0)
        sq_norm = torch.einsum("mk,mkl,ml->", coef, gram, coef).clamp(min=0)
        grad_norm = sq_norm.sqrt()
        if max_norm is not None:
            clip_coef = (max_norm / (grad_norm + 1e-6)).clamp(max=1.0)
        else:
            clip_coef = torch.ones((), dtype=gram.dtype, device=gram.device)
        # The one host sync of a step: a NaN row times a zero coefficient is still NaN.
        if bool(nonfinite.any()):
            for k in torch.nonzero(nonfinite).flatten().tolist():
                self.buffers[k].zero_()
        self._write((coef * clip_coef).to(self.buffers.dtype))
        self.step += 1
        return SurgeryStats(
            domains=self.domains,
            group_names=self.group_names,
            gram=gram,
            coef=coef,
            fired=fired & usable[None, :],
            active=usable,
            nonfinite=nonfinite,
            grad_norm=grad_norm,
            clip_coef=clip_coef,
        )

    def _signature(self) -> torch.Tensor:
        """Per-domain number of blocks entered, plus a hash of their order (for rank agreement)."""
        counts = [float(self._active.count(k)) for k in range(len(self.domains))]
        order_hash = 0
        for k in self._active:
            order_hash = (order_hash * 31 + k + 1) % 1_000_003
        sig = torch.tensor([*counts, float(order_hash)], dtype=torch.float64)
        backend_device = (
            self.device if dist.is_initialized() and dist.get_backend() == "nccl" else "cpu"
        )
        return sig.to(backend_device)

    def _gram(self) -> torch.Tensor:
        """``[M, K, K]`` float64 Gram stack in one read pass (summed over shards under FSDP2)."""
        if not self._batched:
            return per_group.gram(self)
        num_domains, num_groups = len(self.domains), len(self._bounds)
        blocks, block_gram, _ = self._batch_views()
        torch.bmm(blocks, blocks.transpose(1, 2), out=block_gram)  # [B, K, K]
        # Per-block partial sums are summed per parameter, then in float64 per group.
        per_slot = torch.segment_reduce(  # [S, K*K]
            block_gram.view(self._num_chunks, -1), "sum", lengths=self._slot_chunks, unsafe=True
        ).double()
        if not self._shard_groups:
            gram = self._sum_per_group(per_slot)
        else:  # local pieces of sharded parameters are partial sums: reduce them over the shards
            sharded = self._sum_per_group(torch.where(self._slot_sharded[:, None], per_slot, 0.0))
            for group in self._shard_groups:
                dist.all_reduce(sharded, group=group)
            replicated = torch.where(self._slot_sharded[:, None], 0.0, per_slot)
            gram = sharded + self._sum_per_group(replicated)
        return gram.view(num_groups, num_domains, num_domains)

    def _sum_per_group(self, per_slot: torch.Tensor) -> torch.Tensor:
        return torch.segment_reduce(per_slot, "sum", lengths=self._group_sizes, unsafe=True)

    def _batch_views(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Blocks ``[B, K, C]`` of the buffers, and scratch for block Grams and coefficients.

        Allocates the combined gradients on first use: one flat tensor sliced per parameter. The
        block Grams ``[B, K, K]`` live in it until the write pass overwrites it (when K*K <= C),
        so the surgeon needs no more than the K buffers, the gradients and ``[B, K]`` floats.
        """
        num_domains, chunk, num_chunks = len(self.domains), self._chunk, self._num_chunks
        if self._out_flat is None:
            kwargs = {"dtype": self.buffer_dtype, "device": self.device}
            self._out_flat = torch.empty(self.buffers.shape[1], **kwargs)
            for i, slot in enumerate(self._slots):
                local = self._out_flat[slot.start : slot.end].view(slot.shape)
                self._out[i] = mgs_dist.wrap_like(slot.param, local)
            grams = num_chunks * num_domains**2
            self._scratch = (
                self._out_flat[:grams] if num_domains**2 <= chunk else torch.empty(grams, **kwargs),
                torch.empty(num_chunks, num_domains, **kwargs),
            )
        assert self._scratch is not None
        block_gram = self._scratch[0].view(num_chunks, num_domains, num_domains)
        blocks = self.buffers.view(num_domains, num_chunks, chunk).transpose(0, 1)
        return blocks, block_gram, self._scratch[1]

    def _write(self, coef: torch.Tensor) -> None:
        """One pass: ``param.grad = coef[m] @ buffers[:, slice]`` for every parameter."""
        if not self._batched:
            per_group.write(self, coef)
            return
        blocks, _, block_coef = self._batch_views()
        # [B, K] coefficients of every block. On CPU in slices below ATen's parallel grain size:
        # a small multi-threaded kernel is cheap on an idle CPU but waits for a descheduled
        # thread (a scheduler tick, ~10 ms) on a busy one.
        step = _GRAIN // coef.shape[1] if self.device.type == "cpu" else max(self._num_chunks, 1)
        for a in range(0, self._num_chunks, step):
            torch.index_select(
                coef, 0, self._chunk_group[a : a + step], out=block_coef[a : a + step]
            )
        out = self._out_flat.view(self._num_chunks, 1, self._chunk)
        torch.bmm(block_coef.unsqueeze(1), blocks, out=out)  # [B, 1, K] @ [B, K, C]
        for slot, grad in zip(self._slots, self._out):
            slot.param.grad = grad
