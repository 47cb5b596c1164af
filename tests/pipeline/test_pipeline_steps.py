"""The pieces of a pipeline step that need no training: names, paths, URIs, progress lines."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest

from facesim.pipeline.backends import (
    KubernetesBackend,
    LocalProcessBackend,
    StepFailed,
    backend_for,
    volume_uri,
)
from facesim.pipeline.local_run import ProgressLog
from facesim.pipeline.settings import TrainingSettings, TuningSettings, from_struct, struct
from facesim.pipeline.steps import (
    Hyperparameters,
    RunLayout,
    check_accuracy,
    facesim_metrics,
    final_config,
    publish_model,
    resource_name,
    search,
)
from facesim.training.config import parse_config
from facesim.training.tfjob import TFJobConfig
from facesim.tuning.katib import ExperimentConfig


def test_cluster_files_live_on_the_volumes_and_map_to_pvc_uris() -> None:
    layout = RunLayout.for_run("cluster", "", "facesim-abc")
    assert layout.model == Path("/mnt/models/facesim-abc/model")
    assert layout.tuning == Path("/mnt/runs/facesim-abc/tuning")
    assert volume_uri(str(layout.model)) == "pvc://facesim-models/facesim-abc/model"
    assert volume_uri(str(layout.gallery)) == "pvc://facesim-models/facesim-abc/gallery"
    assert volume_uri(str(layout.int8_model)) == "pvc://facesim-models/facesim-abc/model-int8"
    with pytest.raises(StepFailed, match="no facesim volume"):
        volume_uri("/tmp/model")
    spaced = RunLayout.for_run("cluster", "", "facesim_pipeline.yaml 2026-11-26 13-00-00")
    assert volume_uri(str(spaced.model)) == "pvc://facesim-models/facesim-pipeline-yaml-2026-11-26-13-00-00/model"


def test_local_files_default_under_facesim_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACESIM_HOME", str(tmp_path))
    layout = RunLayout.for_run("local", "", "run-1")
    assert layout.model == tmp_path / "pipeline" / "runs" / "run-1" / "model"
    assert RunLayout.for_run("local", str(tmp_path / "w"), "run-1").crops_root == tmp_path / "w" / "crops"
    with pytest.raises(StepFailed, match="local, cluster"):
        RunLayout.for_run("gpu", "", "run-1")


@pytest.mark.parametrize("run_name", ["facesim-2026-11-26-12-50-42-436064", "Facesim_Run 7", "x" * 80])
def test_resource_names_are_dns_1123(run_name: str) -> None:
    name = resource_name(run_name, "train")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    assert name.endswith("-train")


def test_names_made_from_a_long_run_name_stay_within_63_characters() -> None:
    """Kubeflow's run names are long (`<pipeline> <timestamp>`); the TFJob's worker Services
    (`<job>-worker-<i>`) and each trial's (`<experiment>-<8 characters>-worker-<i>`) must still be DNS labels."""
    run = "facesim-pipeline-run-with-a-descriptive-name 2026-12-07 19:48:17.436064"
    job, search = resource_name(run, "train"), resource_name(run, "tune")
    assert len(f"{job}-worker-999") <= 63 and len(f"{search}-abcdefgh-worker-999") <= 63
    assert resource_name(run, "train") == job  # deterministic: a retried step names the same job
    assert resource_name(run + "x", "train") != job  # runs sharing a long head get different jobs
    TFJobConfig(name=job)
    ExperimentConfig(name=search)  # each config's own bound
    with pytest.raises(ValueError, match="worker Services"):
        ExperimentConfig(name=f"{search}-more")
    with pytest.raises(ValueError, match="worker Services"):
        TFJobConfig(name="t" * 53)


def test_metrics_keep_facesim_names_only() -> None:
    lines = [
        "[worker 0] To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
        "[worker 0] accuracy=0.75",
        "auc=0.8 tar_at_far_1e-3=0.1",
    ]
    assert facesim_metrics(lines) == {"accuracy": 0.75, "auc": 0.8, "tar_at_far_1e-3": 0.1}


def test_progress_log_shows_one_line_per_step_and_keeps_everything() -> None:
    log, terminal = io.StringIO(), io.StringIO()
    progress = ProgressLog(log, terminal, steps=2)
    kfp_output = (
        "12:00:00.000 - INFO - Executing task \x1b[96m'prepare-data'\x1b[0m\n"
        "    noisy executor input {...}\n"
        "    facesim-pipeline: face crops ready in /x\n"
        "12:00:03.000 - INFO - Task \x1b[96m'prepare-data'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m\n"
        "12:00:03.100 - INFO - Executing task 'train-model'\n"
        "    [worker 0] loss=0.3\n"
        "    [worker 0] val_accuracy=0.61\n"
        "12:00:09.000 - ERROR - Task 'train-model' finished with status FAILURE\n"
    )
    for chunk in (kfp_output[:50], kfp_output[50:170], kfp_output[170:]):  # writes split mid-line
        progress.write(chunk)
    shown = terminal.getvalue().splitlines()
    assert shown[0] == "[1/2] prepare-data ..."
    assert shown[1] == "      face crops ready in /x"
    assert re.fullmatch(r"\[1/2\] prepare-data: success in \d+ s", shown[2])
    assert shown[3] == "[2/2] train-model ..."
    assert shown[4] == "      [worker 0] val_accuracy=0.61"
    assert re.fullmatch(r"\[2/2\] train-model: failure in \d+ s", shown[5])
    assert len(shown) == 6 and "noisy executor input" in log.getvalue() and "loss=0.3" in log.getvalue()


@pytest.mark.integration  # builds the kfp pipeline's graph (kfp inspects the call stack per task)
def test_a_local_run_checks_its_arguments_before_any_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facesim.pipeline.cli import main

    (tmp_path / "alice").mkdir()  # identity folders, but no LFW protocol files
    code = main(
        [
            "run",
            "--data",
            str(tmp_path),
            "--architecture",
            "resnet",
            "--epochs",
            "-1",
            "--tune-algorithm",
            "hyperband",
            "--tune",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    for expected in (
        "no pairs.txt",
        "--architecture must be one of mobilefacenet",
        "--epochs must be at least 1",
        "--tune-algorithm must be one of random",
        "--tune sweeps the embedding size, which a pretrained start keeps (128): add --init scratch",
    ):
        assert expected in err
    assert "Traceback" not in err and not (tmp_path / "logs").exists()


SETTINGS = TrainingSettings(
    architecture="tiny", max_identities=20, workers=2, epochs=3, steps_per_epoch=5, init="scratch"
)


def test_the_final_run_checkpoints_on_the_runs_volume_and_exports_to_the_models_volume() -> None:
    layout = RunLayout.for_run("cluster", "", "facesim-abc")
    config = final_config("/mnt/data/crops/lfw", layout, SETTINGS, Hyperparameters(0.3, 64, 0.002))
    assert config.run_dir == "/mnt/runs/facesim-abc/train"  # checkpoints: not the models volume
    assert config.out == "/mnt/models/facesim-abc/model"
    assert (config.architecture, config.max_identities, config.workers, config.epochs) == ("tiny", 20, 2, 3)
    assert (config.margin, config.embedding_dim, config.learning_rate) == (0.3, 64, 0.002)
    assert config.image_size is None and config.val_pairs is None  # 0 in the pipeline is "the default" here too


def test_settings_a_training_run_refuses_fail_the_step_with_its_reason() -> None:
    layout = RunLayout.for_run("local", "/w", "run-1")
    with pytest.raises(StepFailed, match="must divide evenly among 3 workers"):
        final_config("/w/crops/x", layout, TrainingSettings(workers=3), Hyperparameters(0.0, 128, 0.0))


def test_the_cluster_backend_runs_the_final_run_as_a_tfjob_with_its_very_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from facesim.cluster.client import ClusterError
    from facesim.training import tfjob

    submitted: list[TFJobConfig] = []
    monkeypatch.setattr(tfjob, "submit_tfjob", lambda job, wait: submitted.append(job))
    config = final_config(
        "/mnt/data/crops/lfw", RunLayout.for_run("cluster", "", "r"), SETTINGS, Hyperparameters(0.3, 64, 0.002)
    )
    KubernetesBackend().train(config, "r-train")
    (job,) = submitted
    assert (job.name, job.workers) == ("r-train", 2)
    assert parse_config(list(job.train_args)) == config

    def refuse(job: TFJobConfig, wait: bool) -> None:
        raise ClusterError("TFJob facesim/r-train failed; see `kubectl -n facesim logs r-train-worker-0`")

    monkeypatch.setattr(tfjob, "submit_tfjob", refuse)
    with pytest.raises(StepFailed, match="training: TFJob facesim/r-train failed"):
        KubernetesBackend().train(config, "r-train")


def test_a_search_gives_each_trial_the_training_settings_the_tuner_does_not_set_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from facesim.tuning import katib, local

    layout = RunLayout.for_run("local", "/w", "run-1")
    tuning = TuningSettings(trials=2, tune_algorithm="random", tune_epochs=2, tune_steps_per_epoch=4)
    wanted = search("/w/crops/x", layout, "run-1", SETTINGS, tuning)
    trial = list(wanted.trial_args())
    assert trial[trial.index("--architecture") + 1] == "tiny" and trial[trial.index("--max-identities") + 1] == "20"
    assert not {"--data", "--out", "--workers", "--epochs", "--steps-per-epoch"} & set(trial)  # the tuner's own

    searched: list[object] = []
    monkeypatch.setattr(local, "tune_locally", lambda config: searched.append(config) or pytest.fail("stop"))
    with pytest.raises(pytest.fail.Exception):
        LocalProcessBackend().tune(wanted)
    here = searched.pop()
    assert isinstance(here, local.LocalTuneConfig)
    assert (here.data, here.out, here.trials, here.algorithm) == (
        "/w/crops/x",
        Path("/w/runs/run-1/tuning"),
        2,
        "random",
    )
    assert (here.workers, here.epochs, here.steps_per_epoch, here.train_args) == (2, 2, 4, trial)

    monkeypatch.setattr(katib, "tune_on_cluster", lambda config, out: searched.append(config) or pytest.fail("stop"))
    with pytest.raises(pytest.fail.Exception):
        KubernetesBackend().tune(wanted)
    experiment = searched.pop()
    assert isinstance(experiment, katib.ExperimentConfig)
    assert (experiment.name, experiment.max_trial_count, experiment.trial_epochs) == ("run-1-tune", 2, 2)
    assert experiment.trial_job.workers == 2
    assert list(experiment.train_args) == ["--data", "/w/crops/x", "--steps-per-epoch", "4", *trial]


def test_an_unknown_backend_names_the_choices() -> None:
    with pytest.raises(StepFailed, match="local, cluster"):
        backend_for("gpu")


def test_settings_come_back_typed_from_a_kfp_struct() -> None:
    """kfp hands a struct's numbers over as text ("3.0"); the step gets its settings as they were."""
    struct_ = {name: str(float(value)) if isinstance(value, int) else value for name, value in vars(SETTINGS).items()}
    assert from_struct(TrainingSettings, struct_) == SETTINGS
    assert struct(TuningSettings, {**vars(TuningSettings()), "data": "x"}) == vars(TuningSettings())


def test_the_accuracy_gate() -> None:
    check_accuracy(0.91, 0.9)
    check_accuracy(0.5, 0.0)  # the default gate lets everything through
    for accuracy in (0.89, float("nan")):
        with pytest.raises(StepFailed, match=r"below min_accuracy 0\.9000: not deploying"):
            check_accuracy(accuracy, 0.9)


def test_the_model_artifact_is_a_copy_with_the_model_card_and_where_the_volume_has_it(tmp_path: Path) -> None:
    model = tmp_path / "volume" / "model"
    (model / "saved_model").mkdir(parents=True)
    (model / "saved_model" / "saved_model.pb").write_bytes(b"graph")
    (model / "model.json").write_text(json.dumps({"embedding_dim": 64, "image_size": 64, "margin": 0.2, "x": 1}))
    metadata = publish_model(str(model), str(tmp_path / "artifact"))
    assert (tmp_path / "artifact" / "saved_model" / "saved_model.pb").read_bytes() == b"graph"
    assert metadata == {"volume_path": str(model), "embedding_dim": 64, "image_size": 64, "margin": 0.2}


@pytest.mark.integration  # builds the kfp pipeline's graph (kfp inspects the call stack per task)
def test_a_batch_that_does_not_divide_among_the_workers_is_refused_before_any_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facesim.pipeline.cli import main

    assert main(["run", "--data", str(tmp_path), "--workers", "3"]) == 2
    assert "must divide evenly among 3 workers" in capsys.readouterr().err
    assert main(["submit", "--host", "http://127.0.0.1:9", "--workers", "3"]) == 2  # refused before any request
    assert "must divide evenly among 3 workers" in capsys.readouterr().err


def test_the_gallery_step_calibrates_the_gallery_or_says_why_not(
    tiny_gallery_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from facesim.gallery.store import GalleryStore
    from facesim.pipeline import steps

    gallery = tmp_path / "gallery"
    shutil.copytree(tiny_gallery_dir, gallery)
    steps.calibrate_gallery_threshold(gallery)  # FAR 1e-3: the tiny gallery has too few impostor pairs
    assert "the gallery keeps the model's threshold: too few pairs to calibrate at FAR 0.001" in capsys.readouterr().out
    assert GalleryStore(gallery).info.calibration is None

    monkeypatch.setattr(steps, "GALLERY_FAR", 0.05)
    steps.calibrate_gallery_threshold(gallery)
    calibration = GalleryStore(gallery).info.calibration
    assert calibration["target_far"] == 0.05 and calibration["far"] <= 0.05
    assert f"gallery's own threshold {calibration['threshold']:.4f} at FAR" in capsys.readouterr().out

    with pytest.raises(StepFailed, match="no-such-gallery"):  # any other failure fails the step
        steps.calibrate_gallery_threshold(tmp_path / "no-such-gallery")


def test_what_a_step_calls_fails_as_a_step_failure_that_says_why(tmp_path: Path) -> None:
    """No exit code or output to read: the functions the CLI calls raise, the step says what went wrong."""
    from facesim.pipeline import steps
    from facesim.training.config import TrainConfig

    nowhere = TrainConfig(data=str(tmp_path / "nowhere"), out=str(tmp_path / "m"))
    with pytest.raises(StepFailed, match=r"training: .*nowhere.* does not exist"):
        LocalProcessBackend().train(nowhere, "run-train")
    with pytest.raises(StepFailed, match=f"evaluating {tmp_path}: .*not a model artifact"):
        steps.evaluate(str(tmp_path), str(tmp_path))
    with pytest.raises(StepFailed, match="no such directory"):
        steps.prepare_data(str(tmp_path / "nowhere"), RunLayout.for_run("local", str(tmp_path), "r"), SETTINGS)
