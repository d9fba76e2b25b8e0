"""Weight sync into vLLM through LLM.apply_model: names, chunks, wrappers, FSDP2 DTensors (1-rank
gloo), tensors passed as they are to an in-process worker and as CPU copies to worker processes."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.distributed as dist
from test_rl_vllm_fakes import RecordingModel

from mgs.rl.vllm_engine import LoadWeights, full_weight_chunks, hf_name, push_weights

SMALL = dict(
    hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64
)  # sizes of this file's tiny policies


@pytest.fixture
def policy(tiny_policy):
    return tiny_policy(**SMALL)


def _reference(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class InProcessLLM:
    """An engine whose worker lives in this process: apply_model calls fn on its model."""

    def __init__(self) -> None:
        self.model = RecordingModel()

    def apply_model(self, fn):
        assert isinstance(fn, LoadWeights)
        return [fn(self.model)]


def _engine() -> tuple[InProcessLLM, RecordingModel]:
    llm = InProcessLLM()
    return llm, llm.model


def _assert_received(target: RecordingModel, reference: dict[str, torch.Tensor]) -> None:
    received = target.received()
    assert list(received) == list(reference)
    for name, tensor in received.items():
        assert type(tensor) is torch.Tensor, f"{name} is a {type(tensor).__name__}"
        assert tensor.shape == reference[name].shape and tensor.equal(reference[name]), name


def test_every_parameter_once_under_its_hugging_face_name(policy) -> None:
    llm, target = _engine()
    assert push_weights(llm, policy, chunk_bytes=2**30, in_process=True) == 1
    reference = _reference(policy)
    assert "lm_head.weight" not in reference  # tied to the embedding: pushed once, as the embedding
    assert set(reference) == set(policy.state_dict()) - {"lm_head.weight"}
    _assert_received(target, reference)


def test_an_in_process_worker_gets_the_tensors_themselves(policy) -> None:
    llm, target = _engine()
    push_weights(llm, policy, chunk_bytes=2**30, in_process=True)
    params = dict(policy.named_parameters())
    for name, tensor in target.received().items():  # no copy: on a GPU they stay on the GPU
        assert tensor.data_ptr() == params[name].data_ptr(), name


def test_chunks_bound_the_gathered_bytes(policy) -> None:
    sizes = {name: p.numel() * p.element_size() for name, p in policy.named_parameters()}
    limit = 3 * max(sizes.values())
    chunks = list(full_weight_chunks(policy, limit))
    assert len(chunks) > 2
    assert [name for chunk in chunks for name, _ in chunk] == list(sizes)  # in order, all, once
    for chunk in chunks:
        total = sum(sizes[name] for name, _ in chunk)
        assert total - sizes[chunk[-1][0]] < limit  # it closes as soon as it reaches the limit
    for chunk in chunks[:-1]:
        assert sum(sizes[name] for name, _ in chunk) >= limit
    assert all(len(chunk) == 1 for chunk in full_weight_chunks(policy, 1))


def test_wrapper_name_parts_are_removed(policy) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    reference = _reference(policy)
    for i, layer in enumerate(policy.model.layers):
        policy.model.layers[i] = checkpoint_wrapper(layer)
    compiled = torch.compile(policy)  # parameters named _orig_mod.<name>; nothing is compiled yet
    wrapped = [name for name, _ in compiled.named_parameters()]
    assert wrapped[1].startswith("_orig_mod.") and "_checkpoint_wrapped_module" in wrapped[1]
    llm, target = _engine()
    push_weights(llm, compiled, chunk_bytes=2**30, in_process=True)
    _assert_received(target, reference)
    assert hf_name("_fsdp_wrapped_module.model._orig_mod.norm.weight") == "model.norm.weight"


@pytest.fixture
def one_rank_group():
    """A real 1-process gloo group, so that DDP and FSDP2 (DTensor parameters) work on CPU."""
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_fsdp2_dtensors_are_gathered_once_each(policy, one_rank_group, monkeypatch) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    reference = _reference(policy)
    mesh = init_device_mesh("cpu", (1,))
    for layer in policy.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(policy, mesh=mesh)
    assert all(isinstance(p, DTensor) for p in policy.parameters())
    gathered = []
    full_tensor = DTensor.full_tensor

    def counting(self, *args, **kwargs):
        gathered.append(tuple(self.shape))
        return full_tensor(self, *args, **kwargs)

    monkeypatch.setattr(DTensor, "full_tensor", counting)
    llm, target = _engine()
    push_weights(llm, policy, chunk_bytes=4096, in_process=True)
    assert gathered == [tuple(t.shape) for t in reference.values()]
    assert len(target.loads) > 1
    _assert_received(target, reference)  # plain tensors with the full values


def test_ddp_module_prefix_is_removed(policy, one_rank_group) -> None:
    reference = _reference(policy)
    ddp = torch.nn.parallel.DistributedDataParallel(policy)
    assert next(iter(dict(ddp.named_parameters()))).startswith("module.")
    llm, target = _engine()
    push_weights(llm, ddp, chunk_bytes=2**30, in_process=True)
    _assert_received(target, reference)


class MultiprocessLLM:
    """An engine in other processes: apply_model serializes the callable to each worker."""

    def __init__(self, workers: int) -> None:
        self.models = [RecordingModel() for _ in range(workers)]
        self.sent: list[LoadWeights] = []

    def apply_model(self, fn):
        self.sent.append(fn)
        return [pickle.loads(pickle.dumps(fn))(model) for model in self.models]


def test_worker_processes_get_cpu_copies_through_apply_model(policy) -> None:
    llm = MultiprocessLLM(workers=2)
    sizes = [p.numel() * p.element_size() for p in policy.parameters()]
    chunks = push_weights(llm, policy, chunk_bytes=max(sizes), in_process=False)
    assert chunks > 1 and len(llm.sent) == chunks
    assert all(t.device.type == "cpu" for fn in llm.sent for _, t in fn.weights)
    for worker in llm.models:  # every tensor-parallel worker loads the full weights
        assert len(worker.loads) == chunks
        _assert_received(worker, _reference(policy))
