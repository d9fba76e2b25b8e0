"""Benchmark of ``GradientSurgeon.apply()`` against a per-tensor Python loop and a plain copy.

Run from the repository root::

    .venv/bin/python benchmarks/surgery.py            # ~41M-parameter decoder, K = 2, 3, 4
    .venv/bin/python benchmarks/surgery.py --quick    # small smoke run (a few seconds)
    .venv/bin/python benchmarks/surgery.py --layers 24 --hidden 512 --repeats 9
    .venv/bin/python benchmarks/surgery.py --aggregators-only --domains 3   # the aggregator table

For every K it makes K per-domain gradients of a Qwen2-like decoder stack (q/k/v with biases, o,
gate/up/down, two RMSNorm weights per layer, tied embeddings, final norm), one ``{name: tensor}``
dict per domain as the original code kept them, hands them to the surgeon through the public API
(``with surgeon.domain(d):`` copying into ``p.grad`` in place), then times on the same inputs:

- ``apply()`` (PCGrad) at granularity ``tensor`` and, as extra rows, ``module``/``layer``/``global``;
- the per-tensor loop in the style of the original implementation (on the per-domain dicts; for
  every parameter and domain: clone, walk the other domains in a random order,
  ``torch.dot(...).item()`` conflict test, project, sum, write ``p.grad``), checked to give the
  same gradients as ``apply()`` for the same random orders (the surgeon's, recorded), and apart
  the per-domain clones of every ``p.grad`` that the original made each step (the surgeon's
  backward accumulates straight into its buffers);
- a plain ``dst.copy_(src)`` of one domain buffer (N floats), for the bandwidth reference.

A second table times ``apply()`` with every registered aggregator (``--aggregators``; PCGrad's
row is the reference) at granularity ``tensor``, ``module`` and ``global``, and apart the
aggregator's own share (the ``[M, K, K] -> [M, K]`` call on the same Gram stack), all aggregators
taking turns within each round (``--agg-repeats`` rounds after a warm-up).

Times are medians over ``--repeats`` runs after a warm-up, the copy, the loop and ``apply()`` taking
turns so that all see the same machine load. The achieved bandwidth of ``apply()`` is
``(2K+1) * N * 4`` bytes (read K buffers for the Gram pass, read K + write 1 for the output) over
its time; the copy moves ``2 * N * 4`` bytes. The memory lines give the surgeon's allocations
(from tensor storages, confirmed with RSS deltas from ``/proc/self/status``). Runs on
``--threads`` torch threads (default 2) with ``OMP_WAIT_POLICY=PASSIVE`` unless the environment
says otherwise, as the ``mgs`` command does. ``--quick`` is a smoke run: its model fits in cache,
so its bandwidth figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

# As the mgs command line does: OpenMP threads that spin while waiting make a 2-thread torch
# process crawl whenever another process holds a core. An explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch import nn

from mgs.surgery import GradientSurgeon, available_aggregators, get_aggregator
from mgs.surgery.aggregators import random_orders

DOMAINS = ["math", "chat", "if", "code"]
MIB = 2**20


# ---------------------------------------------------------------------------------------- model


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))


class Attention(nn.Module):
    def __init__(self, hidden: int, kv_dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(hidden, hidden, bias=True)
        self.k_proj = nn.Linear(hidden, kv_dim, bias=True)
        self.v_proj = nn.Linear(hidden, kv_dim, bias=True)
        self.o_proj = nn.Linear(hidden, hidden, bias=False)


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)


class Block(nn.Module):
    def __init__(self, hidden: int, intermediate: int, kv_dim: int) -> None:
        super().__init__()
        self.self_attn = Attention(hidden, kv_dim)
        self.mlp = MLP(hidden, intermediate)
        self.input_layernorm = RMSNorm(hidden)
        self.post_attention_layernorm = RMSNorm(hidden)


class Decoder(nn.Module):
    """Parameters of a Qwen2-like decoder (no forward pass: the benchmark writes gradients)."""

    def __init__(self, layers: int, hidden: int, intermediate: int, kv_dim: int, vocab: int):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, hidden)  # tied with the LM head
        self.model.layers = nn.ModuleList(
            Block(hidden, intermediate, kv_dim) for _ in range(layers)
        )
        self.model.norm = RMSNorm(hidden)


# ---------------------------------------------------------------------------------------- helpers


def rss_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in KiB (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Temporarily run torch on ``n`` threads (data preparation: robust on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def domain_gradients(model: nn.Module, k: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Per-domain gradients, one ``{name: tensor}`` dict per domain (as the original code kept them).

    Tensor t of domain d is ``sign[d, t] * base_t + 0.7 * noise_{d,t}``: the domains share a
    direction with a random sign per tensor, so about half the (tensor, pair) combinations conflict.
    """
    params = list(model.named_parameters())
    sizes = [p.numel() for _, p in params]
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(sum(sizes), generator=gen)
    signs = torch.randint(0, 2, (k, len(params)), generator=gen) * 2.0 - 1.0
    out = []
    for d in range(k):
        flat = torch.randn(sum(sizes), generator=gen).mul_(0.7)
        flat.add_(base * torch.repeat_interleave(signs[d], torch.tensor(sizes)))
        out.append({name: t.view_as(p) for (name, p), t in zip(params, flat.split(sizes))})
    return out


def fill_domain_gradients(
    surgeon: GradientSurgeon, model: nn.Module, grads: list[dict[str, torch.Tensor]]
) -> None:
    """One step's domain gradients through the public API: in-place writes into ``p.grad``."""
    surgeon.zero_grad()
    for d, domain_grads in enumerate(grads):
        with surgeon.domain(DOMAINS[d]), torch.no_grad():
            for name, p in model.named_parameters():
                if p.grad is None:  # buffers of another dtype: the surgeon copies after the block
                    p.grad = torch.empty_like(p)
                p.grad.copy_(domain_grads[name])


# ---------------------------------------------------------------------------------------- baseline


def per_tensor_loop(
    params: list[tuple[str, nn.Parameter]],
    grads: list[dict[str, torch.Tensor]],
    orders: dict[str, list[list[int]]],
) -> None:
    """PCGrad per parameter tensor, the way the original code did it (one host sync per pair)."""
    k = len(grads)
    for name, p in params:
        projected = []
        for i in range(k):
            g_i = grads[i][name].clone()
            for j in orders[name][i]:  # the other domains, in a random order
                g_j = grads[j][name]
                dot = torch.dot(g_i.flatten(), g_j.flatten()).item()
                if dot < 0:
                    g_j_sq = torch.dot(g_j.flatten(), g_j.flatten()).item()
                    if g_j_sq > 0:
                        g_i -= (dot / g_j_sq) * g_j
            projected.append(g_i)
        p.grad = torch.stack(projected).sum(0)


class _RecordOrders:
    """Aggregator wrapper that keeps the random orders of the last call (for the equality check)."""

    def __init__(self, name: str) -> None:
        self.inner = get_aggregator(name)
        self.orders: torch.Tensor | None = None

    def __call__(self, gram, active, orders):
        self.orders = orders
        return self.inner(gram, active, orders)


# ---------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--kv-dim", type=int, default=128, help="k/v projection width (GQA)")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--domains", type=int, nargs="+", default=[2, 3, 4], help="values of K")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per measurement")
    ap.add_argument("--loop-repeats", type=int, default=3, help="timed runs of the slow loop")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument(
        "--granularities",
        nargs="+",
        default=["tensor", "module", "layer", "global"],
        help="extra rows after 'tensor' (the loop baseline is per tensor)",
    )
    ap.add_argument("--no-loop", action="store_true", help="skip the per-tensor loop baseline")
    ap.add_argument(
        "--aggregators",
        nargs="*",
        default=None,
        help="aggregators of the second table (default: every registered one; none: skip it)",
    )
    ap.add_argument(
        "--agg-granularities",
        nargs="+",
        default=["tensor", "module", "global"],
        help="granularities of the aggregator table",
    )
    ap.add_argument(
        "--agg-repeats", type=int, default=5, help="timed rounds of the aggregator table"
    )
    ap.add_argument(
        "--aggregators-only", action="store_true", help="print only the aggregator table"
    )
    ap.add_argument("--quick", action="store_true", help="small model, few repeats (smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.layers, args.hidden, args.intermediate, args.kv_dim, args.vocab = 4, 128, 256, 64, 1024
        args.domains, args.repeats, args.loop_repeats = [2, 3], 3, 1
    if max(args.domains) > len(DOMAINS) or min(args.domains) < 1:
        ap.error(f"--domains must be between 1 and {len(DOMAINS)}")
    if "tensor" not in args.granularities:
        args.granularities = ["tensor", *args.granularities]
    if args.aggregators is None:
        args.aggregators = available_aggregators()
    unknown = set(args.aggregators) - set(available_aggregators())
    if unknown:
        ap.error(f"unknown aggregators {sorted(unknown)}; valid: {available_aggregators()}")
    if args.aggregators and "pcgrad" not in args.aggregators:
        args.aggregators = ["pcgrad", *args.aggregators]
    return args


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so RSS deltas mean something."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def interleaved(fns: dict[str, Callable[[], object]], rounds: dict[str, int]) -> dict[str, list]:
    """Run every function once per round, in turn, so all see the same machine load.

    ``rounds[name]`` is how many rounds ``name`` takes part in (the slow loop takes fewer).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(max(rounds.values())):
        for name, fn in fns.items():
            if r < rounds[name]:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def surgeon_bytes(surgeon: GradientSurgeon, params: list[tuple[str, nn.Parameter]]) -> dict:
    """Bytes the surgeon holds: domain buffers, combined gradients, scratch (distinct storages)."""
    seen: set[int] = set()

    def size(tensors) -> int:
        total = 0
        for t in tensors:
            storage = t.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        return total

    buffers = size([surgeon.buffers])
    grads = size([p.grad for _, p in params if p.grad is not None])
    scratch = size([t for t in getattr(surgeon, "_scratch", None) or () if t is not None])
    return {"buffers": buffers, "grads": grads, "scratch": scratch}


def aggregator_table(
    args: argparse.Namespace, model: nn.Module, params: list[tuple[str, nn.Parameter]]
) -> list[str]:
    """``apply()`` and the aggregator call alone, per aggregator x granularity, for every K."""
    grans = args.agg_granularities
    header = f"{'K':>2}  {'aggregator':<12}" + "".join(
        f" {g + ' apply':>14} {'coef':>7} {'x pcgrad':>8}" for g in grans
    )
    lines = [header, "-" * len(header)]
    for k in args.domains:
        with threads(1):
            grads = domain_gradients(model, k, seed=k)
        cells: dict[str, str] = dict.fromkeys(args.aggregators, "")
        groups = []
        for granularity in grans:
            release_freed_memory()
            surgeon = GradientSurgeon(model, DOMAINS[:k], granularity=granularity)
            with threads(1):
                fill_domain_gradients(surgeon, model, grads)
            med = time_aggregators(surgeon, k, args)
            for name in args.aggregators:
                apply_ms, coef_ms = med[f"apply:{name}"], med[f"coef:{name}"]
                ratio = apply_ms / med["apply:pcgrad"]
                cells[name] += f" {fmt_ms(apply_ms):>14} {fmt_ms(coef_ms):>7} {ratio:>7.2f}x"
            groups.append(f"{granularity}: {len(surgeon.groups)} groups")
            del surgeon
            for _, p in params:
                p.grad = None
        lines += [f"{k:>2}  {name:<12}{cells[name]}" for name in args.aggregators]
        lines.append(f"    ({'; '.join(groups)})")
        del grads
    return lines


def time_aggregators(surgeon: GradientSurgeon, k: int, args: argparse.Namespace) -> dict:
    """Median seconds of ``apply()`` with each aggregator and of the aggregator call alone."""
    instances = {name: get_aggregator(name) for name in args.aggregators}
    gram = surgeon.apply().gram  # the [M, K, K] Gram stack the aggregators see
    active = torch.ones(k, dtype=torch.bool)
    orders = random_orders(gram.shape[0], k, torch.Generator().manual_seed(0))

    def with_aggregator(agg) -> Callable[[], object]:
        def run() -> object:
            surgeon.aggregator = agg
            return surgeon.apply()

        return run

    fns: dict[str, Callable[[], object]] = {}
    for name, agg in instances.items():
        fns[f"apply:{name}"] = with_aggregator(agg)
        fns[f"coef:{name}"] = lambda agg=agg: agg(gram, active, orders)
    for fn in fns.values():  # warm-up
        fn()
    times = interleaved(fns, dict.fromkeys(fns, args.agg_repeats))
    return {key: statistics.median(value) for key, value in times.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    torch.manual_seed(0)
    with torch.no_grad():
        model = Decoder(args.layers, args.hidden, args.intermediate, args.kv_dim, args.vocab)
    params = list(model.named_parameters())
    n = sum(p.numel() for _, p in params)
    sizes = sorted(p.numel() for _, p in params)
    print(
        f"model: {args.layers} layers, hidden {args.hidden}, intermediate {args.intermediate}, "
        f"kv {args.kv_dim}, vocab {args.vocab}: N = {n / 1e6:.1f}M float32 parameters in "
        f"{len(params)} tensors (smallest {sizes[0]}, median {sizes[len(sizes) // 2]}, "
        f"largest {sizes[-1]})"
    )
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    if not args.aggregators_only:
        print(
            f"apply() and copy: medians of {args.repeats} interleaved runs after a warm-up "
            f"(per-tensor loop: {args.loop_repeats} runs, interleaved with the first ones); "
            "range = min-max of apply()"
        )
        print(
            "loop = the per-tensor combination; clones = the K per-domain clones of every p.grad "
            "the original made each step; speed-up = (loop + clones) / apply, w/o cl. = loop / apply"
        )
        print(
            "GB/s = (2K+1) x N x 4 bytes / apply time; copy = dst.copy_(src) of N floats, "
            "2 x N x 4 bytes; ratio = apply GB/s / copy GB/s"
        )
    print()

    header = (
        f"{'K':>2}  {'granularity':<11} {'groups':>6} {'apply ms':>9} {'range ms':>13} "
        f"{'loop ms':>8} {'clones':>7} {'speed-up':>8} {'w/o cl.':>8} "
        f"{'GB/s':>6} {'copy GB/s':>9} {'ratio':>6}"
    )
    rows: list[str] = [header, "-" * len(header)]
    mem_header = (
        f"{'K':>2}  {'buffers':>8} {'grads':>7} {'scratch':>7} {'total':>7} {'bound':>7} "
        f"{'over':>6}   {'RSS: new':>8} {'1st apply':>9} {'peak':>6}"
    )
    memory_rows: list[str] = [mem_header, "-" * len(mem_header)]
    checks: list[str] = []
    src = torch.randn(n)
    dst = torch.empty(n)
    dst.copy_(src)

    def mib(nbytes: float) -> str:
        return f"{nbytes / MIB:.1f}"

    for k in [] if args.aggregators_only else args.domains:
        domains = DOMAINS[:k]
        with threads(1):
            grads = domain_gradients(model, k, seed=k)
        release_freed_memory()
        rss0 = rss_kib("VmRSS")
        surgeon = GradientSurgeon(model, domains, aggregator="pcgrad", granularity="tensor")
        rss_new = rss_kib("VmRSS") - rss0
        with threads(1):
            fill_domain_gradients(surgeon, model, grads)
        # First apply: the surgeon allocates the combined gradients (the model's own .grad).
        release_freed_memory()
        rss_before = rss_kib("VmRSS")
        peak_ok = reset_peak_rss()
        recorder = _RecordOrders("pcgrad")
        surgeon.aggregator = recorder
        surgeon.apply()
        surgeon.aggregator = get_aggregator("pcgrad")
        rss_first = rss_kib("VmRSS") - rss_before
        peak = rss_kib("VmHWM") - rss_before if peak_ok else math.nan
        held = surgeon_bytes(surgeon, params)
        total = sum(held.values())
        bound = (k + 1) * n * 4  # K buffers plus the model's own gradients
        memory_rows.append(
            f"{k:>2}  {mib(held['buffers']):>8} {mib(held['grads']):>7} "
            f"{mib(held['scratch']):>7} {mib(total):>7} {mib(bound):>7} "
            f"{total / bound - 1:>+6.1%}   {rss_new / 1024:>8.1f} {rss_first / 1024:>9.1f} "
            f"{peak / 1024:>6.1f}"
        )
        expected = {name: p.grad.clone() for name, p in params}

        fns: dict[str, Callable[[], object]] = {"copy": lambda: dst.copy_(src)}
        rounds = {"copy": args.repeats}
        if not args.no_loop:  # the loop reads the same per-domain dicts the surgeon was fed
            assert recorder.orders is not None
            order_lists = recorder.orders.tolist()  # [M, K, K-1], groups = tensors here
            orders = {g.key: order_lists[m] for m, g in enumerate(surgeon.groups)}
            # Same results: the loop with the surgeon's random orders gives its gradients.
            per_tensor_loop(params, grads, orders)
            worst = max(
                float((p.grad - expected[name]).abs().max() / expected[name].abs().max())
                for name, p in params
            )
            checks.append(
                f"K={k}: per-tensor loop vs apply() (same random orders), max |difference| / "
                f"max |gradient| over tensors: {worst:.1e}"
            )
            fns["loop"] = lambda grads=grads, orders=orders: per_tensor_loop(params, grads, orders)
            # What the original also paid every step: a clone of every p.grad per domain.
            fns["clones"] = lambda grads=grads: [
                {n: g.clone() for n, g in d.items()} for d in grads
            ]
            rounds["loop"] = rounds["clones"] = args.loop_repeats
        del expected

        for granularity in args.granularities:
            if granularity != "tensor":
                del surgeon
                release_freed_memory()
                surgeon = GradientSurgeon(
                    model, domains, aggregator="pcgrad", granularity=granularity
                )
                with threads(1):
                    fill_domain_gradients(surgeon, model, grads)
                fns.pop("loop", None)
                fns.pop("clones", None)
            surgeon.apply()  # warm-up (the loop's first run was the correctness check)
            fns["apply"], rounds["apply"] = surgeon.apply, args.repeats
            times = interleaved(fns, rounds)
            med = statistics.median(times["apply"])
            gbs = (2 * k + 1) * n * 4 / med / 1e9
            copy_gbs = 2 * n * 4 / statistics.median(times["copy"]) / 1e9
            loop = statistics.median(times["loop"]) if "loop" in times else None
            clones = statistics.median(times["clones"]) if "clones" in times else 0.0
            spread = f"{fmt_ms(min(times['apply']))}-{fmt_ms(max(times['apply']))}"
            rows.append(
                f"{k:>2}  {granularity:<11} {len(surgeon.groups):>6} {fmt_ms(med):>9} "
                f"{spread:>13} {fmt_ms(loop) if loop else '-':>8} "
                f"{fmt_ms(clones) if loop else '-':>7} "
                f"{f'{(loop + clones) / med:.1f}x' if loop else '-':>8} "
                f"{f'{loop / med:.1f}x' if loop else '-':>8} "
                f"{gbs:>6.2f} {copy_gbs:>9.2f} {gbs / copy_gbs:>6.0%}"
            )
        fns.clear()
        del surgeon, grads
        for _, p in params:
            p.grad = None

    if args.aggregators:
        agg_lines = aggregator_table(args, model, params)
    if not args.aggregators_only:
        print_pcgrad_tables(rows, memory_rows, checks)
    if args.aggregators:
        print(
            f"every aggregator: apply() ms (median of {args.agg_repeats} rounds, all aggregators "
            "taking turns), coef = the aggregator call alone on the same [M, K, K] Gram stack, "
            "x pcgrad = apply() / PCGrad's apply() at that granularity"
        )
        print("\n".join(agg_lines))
        print()
    print(
        f"load average at end {os.getloadavg()[0]:.2f}; total benchmark time "
        f"{time.perf_counter() - t_start:.0f} s"
    )
    return 0


def print_pcgrad_tables(rows: list[str], memory_rows: list[str], checks: list[str]) -> None:
    print("\n".join(rows))
    print()
    print(
        "memory, MiB: what the surgeon holds after its first apply() (distinct storages: K domain "
        "buffers incl. block padding, the combined gradients, scratch) against the bound "
        "K buffers + the model's own gradients = (K+1) x N x 4 bytes; RSS deltas at "
        "construction, at the first apply() and its peak (VmHWM)"
    )
    print("\n".join(memory_rows))
    if checks:
        print()
        print("same results:")
        print("\n".join("  " + line for line in checks))
    print()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
