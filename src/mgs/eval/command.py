"""``mgs eval MODEL --bench KIND[=PATH] ...``: evaluate a model or run directory on benchmarks.

Defaults come from the run's own config when MODEL is a run directory (template, stop strings,
response length, rewards, reward model), else from :class:`~mgs.eval.config.EvalConfig`; flags
override them, and ``--set KEY=VALUE`` reaches every config key (``--help-config`` lists them).
Writes the results JSON (``--out``) and a markdown table beside it, and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mgs.eval.benchmarks import BENCHMARKS

TEMPLATES = ("zero_think", "chat_template", "plain", "custom")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = "; ".join(f"{k}: {v.about}" for k, v in BENCHMARKS.items())
    parser.add_argument(
        "model",
        nargs="?",
        help="Hugging Face model directory, LoRA adapter directory, or a run directory of mgs train.",
    )
    parser.add_argument(
        "--bench",
        action="append",
        default=[],
        metavar="[LABEL:]KIND[=PATH]",
        help=f"A benchmark (repeat for several). Kinds: {kinds}.",
    )
    parser.add_argument(
        "--suite",
        metavar="NAME",
        help="A benchmark suite with its own sampling conventions and one summary table: math "
        "(simpleRL-reason's AIME24/25, AMC23 at avg@32; MATH-500, Minerva Math, OlympiadBench, "
        "GSM8K; temperature 1.0, top-p 0.95). Flags override its conventions.",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="--suite: local copies (DIR/aime24.jsonl or DIR/aime24/test.jsonl); a set without "
        "one is read from the hub, and skipped when neither is reachable.",
    )
    g = parser.add_argument_group("prompts and decoding (default: the run's, else zero_think)")
    g.add_argument("--template", choices=TEMPLATES, help="Prompt template, as in training.")
    g.add_argument(
        "--template-text",
        metavar="TEXT",
        help="custom template text with {prompt} / {conversation}.",
    )
    g.add_argument("--preamble", metavar="TEXT", help="zero_think instruction line ('' for none).")
    g.add_argument("--system-prompt", metavar="TEXT", help="chat_template system message.")
    g.add_argument(
        "--extraction",
        choices=("zero_think", "chat"),
        help="Where the response is: inside <response> tags, or the whole completion (chat). "
        "Default: follows --template (chat for chat_template / plain).",
    )
    g.add_argument(
        "--on-missing-response",
        choices=("zero", "after_think"),
        help="No response block: score as missing, or use the text after </think>.",
    )
    g.add_argument(
        "--samples", type=int, metavar="K", help="Completions per prompt (k of avg@k). Default 1."
    )
    g.add_argument(
        "--temperature", type=float, metavar="T", help="0 (default): greedy; > 0: sampling."
    )
    g.add_argument("--top-p", type=float, metavar="P", help="Nucleus sampling mass (default 1.0).")
    g.add_argument("--top-k", type=int, metavar="K", help="Top-k sampling (default 0: off).")
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="Longest completion in tokens.")
    g.add_argument(
        "--stop",
        action="append",
        metavar="STR",
        help="Stop string (repeat); default: </response> for zero_think.",
    )
    g.add_argument("--no-stop", action="store_true", help="Stop at EOS only.")
    g.add_argument("--seed", type=int, metavar="N", help="Sampling seed (default 0).")
    g.add_argument(
        "--limit", type=int, metavar="N", help="Only the first N prompts of each benchmark."
    )
    g.add_argument(
        "--max-prompt-tokens", type=int, metavar="N", help="Longest prompt; default: what fits."
    )
    g.add_argument(
        "--overlong", choices=("filter", "truncate"), help="A prompt over the limit (filter)."
    )
    g.add_argument(
        "--pass-k", type=int, nargs="+", metavar="K", help="k of pass@k (default: 1, 2, 4.., n)."
    )
    g = parser.add_argument_group("judges")
    g.add_argument(
        "--reward-model", metavar="DIR", help="Reward model directory (chat and AlpacaEval)."
    )
    g.add_argument(
        "--tie-margin", type=float, metavar="X", help="Reward-model score gap counted as a tie."
    )
    g.add_argument(
        "--judge-url", metavar="URL", help="OpenAI-compatible API base URL for an LLM judge."
    )
    g.add_argument("--judge-model", metavar="NAME", help="Model name of the LLM judge.")
    g.add_argument(
        "--judge-api-key-env", metavar="VAR", help="Env variable with the judge's API key."
    )
    g.add_argument(
        "--judge-workers", type=int, metavar="N", help="Judge requests in flight (default 4)."
    )
    g = parser.add_argument_group("running")
    g.add_argument("--device", metavar="DEV", help="auto (default), cpu, cuda, cuda:1...")
    g.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"))
    g.add_argument(
        "--micro-batch-size", type=int, metavar="N", help="Sequences per generate() call."
    )
    g.add_argument(
        "--decode",
        choices=("generate", "fast", "auto"),
        help="Decode loop: generate (default), fast (lean loop for Qwen2 / Llama, same tokens on "
        "CPU), auto (fast where supported).",
    )
    g.add_argument("--threads", type=int, metavar="N", help="torch CPU threads.")
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Any config key, e.g. --set math.num_workers=4 --set reward_model.batch_size=16.",
    )
    g.add_argument(
        "--out",
        metavar="JSON",
        help="Results JSON (a .md table is written beside it). Default: RUN/eval_results.json "
        "for a run directory, else ./eval_results.json; eval_results-2.json, -3... when earlier "
        "results are there (an explicit --out is overwritten).",
    )
    g.add_argument("--no-progress", action="store_true", help="No progress bars.")
    g.add_argument("--help-config", action="store_true", help="List every config key and exit.")


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`EvalConfig` of a command line: the model's defaults, then flags, then --set."""
    from mgs.dataclass_config import apply_overrides, from_dict, to_dict
    from mgs.errors import ConfigError
    from mgs.eval.config import EvalConfig, default_config

    data = to_dict(default_config(args.model))
    if args.template is not None:
        data["template"] = {
            "name": args.template,
            "text": args.template_text,
            "preamble": args.preamble,
            "system_prompt": args.system_prompt,
        }
        direct = args.template in ("chat_template", "plain")  # the model answers directly
        data["extraction"]["template"] = "chat" if direct else "zero_think"
        data["stop"] = [] if direct else [data["extraction"]["response_close"]]
    else:
        for key, value in (
            ("text", args.template_text),
            ("preamble", args.preamble),
            ("system_prompt", args.system_prompt),
        ):
            if value is not None:
                data["template"][key] = value
    if args.extraction is not None:
        data["extraction"]["template"] = args.extraction
    if args.on_missing_response is not None:
        data["extraction"]["on_missing_response"] = args.on_missing_response
    if args.stop or args.no_stop:
        data["stop"] = [] if args.no_stop else list(args.stop)
    flags = {
        "samples": args.samples,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "limit": args.limit,
        "max_prompt_tokens": args.max_prompt_tokens,
        "overlong": args.overlong,
        "pass_k": args.pass_k,
        "tie_margin": args.tie_margin,
        "device": args.device,
        "dtype": args.dtype,
        "micro_batch_size": args.micro_batch_size,
        "decode": args.decode,
        "num_threads": args.threads,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.reward_model is not None:
        data["reward_model"]["path"] = args.reward_model
    if args.judge_url or args.judge_model:
        if not (args.judge_url and args.judge_model):
            raise ConfigError("an LLM judge needs both --judge-url URL and --judge-model NAME")
        judge = {"url": args.judge_url, "model": args.judge_model}
        if args.judge_api_key_env is not None:
            judge["api_key_env"] = args.judge_api_key_env
        if args.judge_workers is not None:
            judge["workers"] = args.judge_workers
        data["judge"] = judge
    if args.no_progress:
        data["progress"] = False
    return from_dict(EvalConfig, apply_overrides(data, args.set))


def default_out(model: str) -> Path:
    from mgs.run_dir import RunDir

    run = RunDir(model)
    return (run if run.is_trained() else RunDir(".")).free_eval_results()


def check_out(out: Path) -> None:
    """The results JSON and the markdown table beside it can be written (nothing is created)."""
    from mgs.errors import ConfigError
    from mgs.output_paths import check_output_file
    from mgs.run_dir import RunDir

    check_output_file(out, "--out", RunDir.EVAL_RESULTS)
    table = out.with_suffix(".md")
    if table.is_dir():
        raise ConfigError(
            f"--out {out}: the markdown table goes beside it, to {table}, which is a directory; "
            "pass another --out"
        )


def run(args: argparse.Namespace) -> int:
    from mgs.dataclass_config import describe
    from mgs.errors import ConfigError
    from mgs.eval.benchmarks import BenchmarkSpec
    from mgs.eval.config import EvalConfig

    if args.help_config:
        for key, default, text in describe(EvalConfig):
            print(f"{key} = {default}\n    {text}")
        return 0
    if not args.model:
        raise ConfigError("pass the model to evaluate: mgs eval MODEL_OR_RUN_DIR --bench ...")
    if args.suite:
        _suite_defaults(args)  # the suite's sampling where no flag sets it, before validation
    cfg = build_config(args)
    out = Path(args.out) if args.out else default_out(args.model)
    if out.suffix == ".md":
        raise ConfigError(f"--out {out} is the results JSON; write e.g. --out {out.stem}.json")
    check_out(out)  # now, not after the whole evaluation
    if args.suite:
        return _run_suite(args, cfg, out)
    specs = [BenchmarkSpec.parse(text) for text in args.bench]
    from mgs.eval.runner import check_benchmarks, evaluate_model

    check_benchmarks(specs, cfg)  # before loading anything heavy
    result = evaluate_model(args.model, specs, cfg)
    json_path, md_path = result.save(out)
    print(result.markdown())
    print(f"\nwrote {json_path} and {md_path} ({result.seconds:.0f} s)")
    return 0


def _suite_defaults(args: argparse.Namespace) -> None:
    from mgs.eval.suites import check_suite_args, get_suite

    check_suite_args(args.suite, args.bench)
    suite = get_suite(args.suite)
    for key in ("temperature", "top_p", "max_new_tokens"):
        if getattr(args, key) is None:
            setattr(args, key, getattr(suite, key))


def _run_suite(args: argparse.Namespace, cfg: Any, out: Path) -> int:
    from mgs.eval.suites import run_suite, suite_table

    result, skipped = run_suite(args.model, args.suite, cfg, args.data_dir)
    json_path, md_path = result.save(out)
    table = suite_table(args.suite, result, skipped)
    md_path.write_text(f"{table}\n\n{result.markdown()}\n", encoding="utf-8")
    print(table)
    print(f"\nwrote {json_path} and {md_path} ({result.seconds:.0f} s)")
    return 0
