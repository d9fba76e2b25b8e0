"""VLLMBackend's engine lifecycle on a fake vLLM: weight sync, prefix cache, sleep mode (never a
generate() on a sleeping engine, level 2 re-pushes everything), close."""

from __future__ import annotations

import pytest
import torch
from test_rl_vllm_fakes import FakeLLM, install

from mgs.errors import MgsError
from mgs.rl.rollout import SamplingConfig
from mgs.rl.vllm_backend import VLLMBackend, VLLMConfig

SMALL = dict(
    hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64
)  # sizes of this file's tiny policies
CFG = SamplingConfig(n=2, temperature=1.0, max_new_tokens=4, stop=[])


def _policy(tiny_policy, seed: int = 0):
    policy = tiny_policy(**SMALL, seed=seed)
    policy.name_or_path = "/models/tiny-policy"
    return policy


@pytest.fixture
def fake(monkeypatch, tokenizer):
    return install(monkeypatch, tokenizer)


def _backend(model, tokenizer, **options) -> VLLMBackend:
    return VLLMBackend(model, tokenizer, max_prompt_tokens=16, config=VLLMConfig(**options))


def _calls(llm: FakeLLM) -> list:
    """The calls so far, generate() shortened to its name; then forget them."""
    calls = [c if c[0] != "generate" else ("generate",) for c in llm.calls]
    llm.calls.clear()
    return calls


def _assert_holds(llm: FakeLLM, model: torch.nn.Module, received=None) -> None:
    received = llm.model.received() if received is None else received
    expected = dict(model.named_parameters())
    assert list(received) == list(expected)  # every parameter once, in order, under its HF name
    for name, tensor in received.items():
        assert tensor.equal(expected[name].detach()), name


def test_sync_pushes_every_weight_and_resets_the_prefix_cache_once(
    fake, tokenizer, tiny_policy
) -> None:
    policy, trained = _policy(tiny_policy), _policy(tiny_policy, seed=1)
    backend = _backend(policy, tokenizer)
    llm = backend.llm
    backend.generate(["Hi"], CFG, seed=0)
    assert _calls(llm) == [("generate",)] and llm.model.loads == []  # "auto": the checkpoint's
    backend.sync_weights(trained)
    _assert_holds(llm, trained)
    assert _calls(llm) == [("apply_model",)]  # one chunk; nothing else until the next generation
    backend.generate(["Hi"], CFG, seed=0)
    backend.generate(["Hi"], CFG, seed=0)
    assert _calls(llm) == [("reset_prefix_cache",), ("generate",), ("generate",)]


def test_sync_loads_in_chunks_of_the_configured_size(fake, tokenizer, tiny_policy) -> None:
    policy = _policy(tiny_policy)
    embed = policy.model.embed_tokens.weight  # the largest tensor
    mib = embed.numel() * embed.element_size() / 2**20
    backend = _backend(policy, tokenizer, sync_chunk_mb=1)
    assert mib < 1 and sum(p.numel() * 4 for p in policy.parameters()) < 2**20
    backend.sync_weights(policy)
    assert len(backend.llm.model.loads) == 1  # the whole tiny model fits one MiB chunk
    _assert_holds(backend.llm, policy)


def test_sleep_mode_frees_the_engine_between_generations(
    monkeypatch, tokenizer, tiny_policy
) -> None:
    install(monkeypatch, tokenizer)
    policy, trained = _policy(tiny_policy), _policy(tiny_policy, seed=1)
    backend = _backend(policy, tokenizer, enable_sleep_mode=True)
    llm = backend.llm
    assert llm.kwargs["enable_sleep_mode"] is True
    assert _calls(llm) == [("sleep", 1)] and llm.llm_engine.is_sleeping()  # asleep until needed
    backend.generate(["Hi"], CFG, seed=0)
    assert _calls(llm) == [
        ("wake_up", ["weights"]),
        ("wake_up", ["kv_cache"]),  # only now does vLLM's scheduler resume
        ("reset_prefix_cache",),  # the KV cache was dropped by the sleep
        ("generate",),
        ("sleep", 1),
    ]
    backend.sync_weights(trained)  # weights wake up to be overwritten; the KV cache stays freed
    assert _calls(llm) == [("wake_up", ["weights"]), ("apply_model",)]
    assert llm.llm_engine.is_sleeping()  # the scheduler stays paused: half awake is asleep
    _assert_holds(llm, trained)
    backend.generate(["Hi"], CFG, seed=0)
    assert _calls(llm) == [
        ("wake_up", ["kv_cache"]),
        ("reset_prefix_cache",),
        ("generate",),
        ("sleep", 1),
    ]
    assert len(llm.model.loads) == 1  # level 1 kept the weights: no re-push


def test_level_2_sleep_repushes_every_weight(monkeypatch, tokenizer, tiny_policy) -> None:
    install(monkeypatch, tokenizer)
    policy = _policy(tiny_policy)
    backend = _backend(policy, tokenizer, enable_sleep_mode=True, sleep_level=2)
    llm = backend.llm
    for _ in range(2):  # level 2 discards the weights at every sleep (the fake forgets them)
        backend.generate(["Hi"], CFG, seed=0)  # the fake refuses to generate on discarded weights
        _assert_holds(llm, policy, llm.served)
    assert _calls(llm)[-6:] == [
        ("wake_up", ["weights"]),
        ("apply_model",),
        ("wake_up", ["kv_cache"]),
        ("reset_prefix_cache",),
        ("generate",),
        ("sleep", 2),
    ]
    backend.sync_weights(_policy(tiny_policy, seed=1))  # a sync between generations is not lost
    backend.generate(["Hi"], CFG, seed=0)
    _assert_holds(llm, backend.model, llm.served)


def test_dummy_weights_are_pushed_before_the_first_generation(fake, tokenizer, tiny_policy) -> None:
    policy = _policy(tiny_policy)
    dummy = _backend(policy, tokenizer, load_format="dummy")  # random weights at start
    assert dummy.llm.kwargs["load_format"] == "dummy"
    dummy.generate(["Hi"], CFG, seed=0)
    dummy.generate(["Hi"], CFG, seed=0)
    assert len(dummy.llm.model.loads) == 1
    _assert_holds(dummy.llm, policy)


class StuckLLM(FakeLLM):
    """A vLLM whose scheduler does not resume after waking every tag."""

    def wake_up(self, tags=None):
        super().wake_up(tags)
        self.llm_engine.paused = True


class RefusingLLM(FakeLLM):
    """A vLLM whose wake_up reports failure."""

    def wake_up(self, tags=None):
        super().wake_up(tags)
        return False


def test_generate_is_never_called_on_a_sleeping_engine(monkeypatch, tokenizer, tiny_policy) -> None:
    install(monkeypatch, tokenizer, llm=StuckLLM)
    backend = _backend(_policy(tiny_policy), tokenizer, enable_sleep_mode=True)
    with pytest.raises(MgsError, match=r"still reports is_sleeping\(\).*wait forever"):
        backend.generate(["Hi"], CFG, seed=0)
    assert "generate" not in [c[0] for c in backend.llm.calls]
    backend.close()
    install(monkeypatch, tokenizer, llm=RefusingLLM)
    backend = _backend(_policy(tiny_policy), tokenizer, enable_sleep_mode=True)
    with pytest.raises(MgsError, match=r"could not wake its weights up"):
        backend.generate(["Hi"], CFG, seed=0)


def test_close_shuts_the_engine_down(fake, tokenizer, tiny_policy) -> None:
    backend = _backend(_policy(tiny_policy), tokenizer)
    stopped = []
    backend.llm.llm_engine.engine_core = type(
        "Core", (), {"shutdown": lambda self: stopped.append(1)}
    )()
    backend.close()
    assert stopped == [1] and backend.llm is None
    with pytest.raises(RuntimeError, match="closed"):
        backend.generate(["Hi"], CFG, seed=0)
    with pytest.raises(RuntimeError, match="closed"):
        backend.sync_weights(_policy(tiny_policy))
