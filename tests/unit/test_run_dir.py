"""RunDir: the layout of a run directory in one place."""

from __future__ import annotations

from mgs.run_dir import CompareDir, RunDir


def test_paths_of_the_layout(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    assert run.config == tmp_path / "run" / "config.yaml"
    assert run.metrics.name == "metrics.jsonl" and run.summary.name == "summary.json"
    assert run.surgery_snapshot(12) == tmp_path / "run" / "surgery" / "step_000012.npz"
    assert run.checkpoint(40) == tmp_path / "run" / "checkpoints" / "step_000040"
    assert RunDir.checkpoint_model(run.checkpoint(40)).name == "model"
    assert CompareDir(tmp_path).run("mgs-upgrad", 3).path == tmp_path / "mgs-upgrad-s3"


def test_only_complete_checkpoints_are_listed_oldest_first(tmp_path) -> None:
    run = RunDir(tmp_path)
    for step in (20, 4, 10):
        RunDir.checkpoint_model(run.checkpoint(step)).mkdir(parents=True)
        RunDir.checkpoint_state(run.checkpoint(step)).write_bytes(b"")
    run.checkpoint(30).mkdir()  # no trainer state: incomplete
    run.checkpoint_tmp(40, 123).mkdir()  # being written
    assert [step for step, _ in run.list_checkpoints()] == [4, 10, 20]
    assert run.stale_checkpoint_tmps() == [run.checkpoint_tmp(40, 123)]
    assert RunDir.checkpoint_step(run.checkpoint(10)) == 10


def test_kinds_of_directory(tmp_path) -> None:
    run = RunDir(tmp_path)
    assert not run.is_trained() and not run.has_run_files()
    run.metrics.write_text("")
    assert run.has_run_files() and not run.is_trained()
    run.config.write_text("{}")
    run.model.mkdir()
    assert run.is_trained()
    (run.surgery).mkdir()
    for step in (10, 2):
        run.surgery_snapshot(step).write_bytes(b"")
    assert [s for s, _ in run.surgery_snapshots()] == [2, 10]


def test_a_run_of_mgs_train_holds_its_config_and_nothing_but_the_layout(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    assert run.entries() == [] and not run.is_train_run()  # does not exist
    run.path.mkdir()
    run.metrics.write_text("")
    assert not run.is_train_run()  # no config.yaml: not what mgs train starts with
    run.config.write_text("{}")
    for name in ("eval_results.md", "metrics.jsonl.tmp"):
        (run.path / name).write_text("")
    for name in (RunDir.WANDB, RunDir.REPORT, RunDir.CHECKPOINTS):
        (run.path / name).mkdir()
    assert run.foreign_entries() == [] and run.is_train_run()
    (run.path / RunDir.MODEL_MERGED).mkdir()  # a LoRA run's merged policy (was "foreign")
    for name in ("eval_results-2.json", "eval_results-2.md"):  # a second `mgs eval RUN`
        (run.path / name).write_text("")
    assert run.foreign_entries() == [] and run.is_train_run()
    (run.path / "notes.md").write_text("mine")
    assert run.foreign_entries() == ["notes.md"] and not run.is_train_run()


def test_a_second_eval_of_a_run_gets_a_free_results_name(tmp_path) -> None:
    run = RunDir(tmp_path)
    assert run.free_eval_results() == tmp_path / "eval_results.json"
    (tmp_path / "eval_results.md").write_text("")  # either file taken: the pair moves on
    assert run.free_eval_results() == tmp_path / "eval_results-2.json"
    (tmp_path / "eval_results-2.json").write_text("")
    assert run.free_eval_results() == tmp_path / "eval_results-3.json"


def test_checkpoint_dirs_lists_incomplete_ones_too(tmp_path) -> None:
    run = RunDir(tmp_path)
    RunDir.checkpoint_state(run.checkpoint(4)).parent.mkdir(parents=True)
    RunDir.checkpoint_state(run.checkpoint(4)).write_bytes(b"")
    run.checkpoint(8).mkdir()  # its trainer state lost: a resume reports it as damaged
    run.checkpoint_tmp(12, 1).mkdir()
    assert [step for step, _ in run.checkpoint_dirs()] == [4, 8]
    assert [step for step, _ in run.list_checkpoints()] == [4]


def test_a_checkpoint_path_names_its_run(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    assert RunDir.of_checkpoint(run.checkpoint(200)).path == run.path
    assert RunDir.of_checkpoint(run.path) is None  # a run, not a checkpoint
    assert RunDir.of_checkpoint(tmp_path / "elsewhere" / "step_000200") is None
