"""One trial in isolation: its MLflow run (params, curves, state) and pruning through the study's storage."""

import optuna
from mlflow import MlflowClient
from optuna.distributions import FloatDistribution

from recipe import tracking
from recipe.config import load_config
from recipe.tune.study import open_study, storage_for
from recipe.tune.trial import TrialSpec, run_trial


def test_a_trial_worse_than_the_median_is_pruned_through_the_journal(mlflow_store, tmp_path):
    cfg = load_config(
        overrides=[
            "name=trial-test",
            "model.width=8",
            "trainer.progress=false",
            "stages.tune.pruner=median",
            "stages.tune.epochs=4",
            f"stages.tune.storage={tmp_path / 'optuna'}/",
        ]
    )
    s = cfg.stages.tune
    storage = storage_for(s, "pruning")
    study = open_study("pruning", storage, s, seed=0)
    dist = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}
    for _ in range(4):  # finished trials far better at every epoch than a short cnn can be
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 1e-3}, distributions=dist, value=1e-3, intermediate_values={i: 1e-3 for i in range(1, 5)}
            )
        )
    trial = study.ask(dist)
    exp = tracking.setup("trial-test")
    run_id = MlflowClient().create_run(exp).info.run_id
    spec = TrialSpec(
        config=cfg.to_dict(),
        name="t",
        run_id=run_id,
        tracking_uri=tracking.tracking_uri(),
        epochs=4,
        workdir=str(tmp_path / "w"),
        number=trial.number,
        trial_id=trial._trial_id,
        study_name="pruning",
        storage=storage.spec,
        pruner="median",
    )
    r = run_trial(spec)
    assert r.state == "pruned" and r.pruning and 1 <= r.epochs < 4, (r.state, r.note, r.epochs)
    assert len(r.curve) == r.epochs
    assert study.trials[-1].intermediate_values  # reported by the trial process through the journal
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["recipe.trial_state"] == "pruned"
    assert run.data.params["model.width"] == "8"
    assert len(MlflowClient().get_metric_history(run_id, "val/loss")) == r.epochs


def test_a_trial_that_raises_is_a_failed_result_with_its_run_failed(mlflow_store, tmp_path):
    cfg = load_config(overrides=["name=trial-test", "trainer.progress=false"]).to_dict()
    cfg["model"]["name"] = "no.such:model"
    exp = tracking.setup("trial-test")
    run_id = MlflowClient().create_run(exp).info.run_id
    r = run_trial(
        TrialSpec(
            config=cfg, name="bad", run_id=run_id, tracking_uri=tracking.tracking_uri(), epochs=1, workdir=str(tmp_path)
        )
    )
    assert r.state == "failed" and "no.such" in r.note and r.error
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["recipe.trial_state"] == "failed"


def test_a_run_with_averages_returns_its_swa_and_ema_weights_and_trains_the_same_weights(mlflow_store, tmp_path):
    """TrialSpec.averages (squeeze's member 0): the run also keeps SWA and EMA weights, as files beside its
    checkpoint and as artifacts of its run, and the callbacks leave the training as it is -- the same weights to
    the bit as the run without them, and averages equal to an in-process fit with the same callbacks (so squeeze
    needs no separate averaging run)."""
    import torch

    from recipe.fit import build_for, fit
    from recipe.train import load_weights
    from recipe.train.callbacks import SWA, Polyak

    cfg = load_config(overrides=["name=trial-avg", "model.width=8", "trainer.progress=false"])
    exp = tracking.setup("trial-avg")

    def trial(name, averages):
        run_id = MlflowClient().create_run(exp).info.run_id
        spec = TrialSpec(
            config=cfg.to_dict(),
            name=name,
            run_id=run_id,
            tracking_uri=tracking.tracking_uri(),
            epochs=3,
            workdir=str(tmp_path / "w"),
            log_checkpoint=True,
            averages=averages,
        )
        return run_trial(spec), run_id

    plain, _ = trial("plain", None)
    member0, run_id = trial("member0", (1, 0.9))
    assert plain.state == member0.state == "complete" and not plain.averages
    assert set(member0.averages) == {"swa", "ema"}
    assert member0.averages_uri == {k: f"runs:/{run_id}/checkpoint/member0_{k}.pt" for k in ("swa", "ema")}
    logged = {f.path for f in MlflowClient().list_artifacts(run_id, "checkpoint")}
    assert {"checkpoint/member0_swa.pt", "checkpoint/member0_ema.pt"} <= logged

    def weights(path):
        return load_weights(build_for(cfg, data), path).state_dict()

    from recipe.tune.trial import _data_for

    data = _data_for(cfg)
    a, b = weights(plain.checkpoint), weights(member0.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the averages did not change the training
    swa, ema = SWA(start_epoch=1), Polyak(0.9)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the trial ran (TrialSpec.threads): the same sums in the same order
    try:
        fit(cfg, data, epochs=3, callbacks=[swa, ema], log=False, evaluate=False)
    finally:
        torch.set_num_threads(threads)
    for kind, cb in (("swa", swa), ("ema", ema)):
        mine, theirs = cb.averaged.module.state_dict(), weights(member0.averages[kind])
        assert all(torch.equal(mine[k].cpu(), theirs[k]) for k in theirs), kind
