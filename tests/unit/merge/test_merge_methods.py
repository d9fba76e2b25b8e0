"""mgs merge: TIES and task arithmetic by hand, against peft's merge utilities, and end to end on
tiny Hugging Face models saved in-process."""

from __future__ import annotations

import json

import pytest
import torch

from mgs.cli import main
from mgs.errors import ConfigError
from mgs.merge.command import merge_models
from mgs.merge.methods import task_arithmetic, ties, trim

BASE = torch.zeros(4)
A = torch.tensor([3.0, -1.0, 0.5, -2.0])  # task vectors (the base is 0)
B = torch.tensor([-2.0, 2.0, 0.25, -4.0])


def test_ties_by_hand():
    # density 0.5 keeps 2 of 4 entries per task vector: A -> [3, 0, 0, -2], B -> [0, 2, 0, -4]
    assert trim(A, 0.5).tolist() == [3.0, 0.0, 0.0, -2.0]
    assert trim(B, 0.5).tolist() == [0.0, 2.0, 0.0, -4.0]
    # elected signs from the sums [3, 2, 0, -6]: +, +, + (a zero sum counts as +), -
    # disjoint means: [3/1, 2/1, nobody agrees -> 0, (-2 - 4)/2]
    assert ties(BASE, [A, B], [1.0, 1.0], 1.0, 0.5).tolist() == [3.0, 2.0, 0.0, -3.0]
    # the scale multiplies the merged task vector; the base is added back
    base = torch.ones(4)
    assert ties(base, [A + 1, B + 1], [1.0, 1.0], 0.5, 0.5).tolist() == [2.5, 2.0, 1.0, -0.5]


def test_task_arithmetic_by_hand():
    assert task_arithmetic(BASE, [A, B], [1.0, 1.0], 0.5).tolist() == [0.5, 0.5, 0.375, -3.0]
    assert task_arithmetic(BASE, [A, B], [2.0, 0.0], 1.0).tolist() == (2 * A).tolist()


def test_against_peft_merge_utils():
    merge_utils = pytest.importorskip("peft.utils.merge_utils")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(16, 8, generator=g)
    tuned = [base + torch.randn(16, 8, generator=g) for _ in range(3)]
    taus = [t - base for t in tuned]
    weights = [1.0, 0.5, 2.0]
    want = merge_utils.ties(taus, torch.tensor(weights), density=0.3)
    assert torch.allclose(ties(base, tuned, weights, 1.0, 0.3), base + want, atol=1e-6)
    want = merge_utils.task_arithmetic(taus, torch.tensor(weights))
    assert torch.allclose(task_arithmetic(base, tuned, weights, 1.0), base + want, atol=1e-6)


def tiny_model(seed: int, layers: int = 1):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)  # fmt: skip
    return Qwen2ForCausalLM(cfg)


def test_merge_end_to_end_and_refusals(tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM

    base = tiny_model(0)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    for i in (1, 2):  # "fine-tuned" copies: the base plus a known offset per tensor
        m = tiny_model(0)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(float(i) if i == 1 else -0.5)
        m.save_pretrained(tmp_path / f"m{i}")
    info = merge_models(tmp_path / "base", [tmp_path / "m1", tmp_path / "m2"], tmp_path / "out",
                        "task_arithmetic")  # fmt: skip
    assert info["scale"] == 0.5
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for (name, p), q in zip(merged.named_parameters(), base.parameters()):
        assert torch.allclose(p, q + 0.25, atol=1e-6), name  # mean offset of +1 and -0.5
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()
    assert (
        json.loads((tmp_path / "out" / "merge_config.json").read_text())["method"]
        == "task_arithmetic"
    )
    # TIES with density 1: every entry kept; signs + and - disagree: + wins (sum 0.5 > 0)
    merge_models(
        tmp_path / "base",
        [tmp_path / "m1", tmp_path / "m2"],
        tmp_path / "ties",
        "ties",
        density=1.0,
    )
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "ties")
    assert all(torch.allclose(p, q + 1.0) for p, q in zip(merged.parameters(), base.parameters()))
    tiny_model(0, layers=2).save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match=r"does not share the base.s architecture: config\.json"):
        merge_models(tmp_path / "base", [tmp_path / "other"], tmp_path / "bad")
    assert main(["merge", "--base", str(tmp_path / "base"), str(tmp_path / "m1"), "--out",
                 str(tmp_path / "x"), "--weights", "1", "2"]) == 2  # fmt: skip
    # --out must be a new or empty directory: a file, or any directory holding files (a run
    # directory, one of the merge's own inputs), is refused before anything is read
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")  # was a FileExistsError traceback
    with pytest.raises(ConfigError, match=r"is a file, not a directory"):
        merge_models(tmp_path / "base", [tmp_path / "m1"], a_file)
    before = sorted(p.name for p in (tmp_path / "m2").iterdir())
    with pytest.raises(ConfigError, match=r"is not empty \(it holds config.json, "):
        merge_models(tmp_path / "base", [tmp_path / "m1", tmp_path / "m2"], tmp_path / "m2")
    assert sorted(p.name for p in (tmp_path / "m2").iterdir()) == before  # was written into
    (tmp_path / "empty").mkdir()
    merge_models(tmp_path / "base", [tmp_path / "m1"], tmp_path / "empty")
    assert (tmp_path / "empty" / "merge_config.json").is_file()
