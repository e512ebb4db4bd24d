"""The training loop on the tiny config: the run folder, exact resume, fine-tuning."""

import csv
import math

import pytest
import torch
from typer.testing import CliRunner

from reid.cli import app
from reid.licence import ATRW, of_release
from reid.model import EmbeddingModel
from reid.release import load_checkpoint_model, save_release
from training.config import load_config
from training.engine import fit


class Killed(Exception):
    pass


def test_one_epoch_writes_the_run_folder(tiny_config, tmp_path):
    cfg = tiny_config("schedule.epochs=1")
    out = tmp_path / "run"
    summary = fit(cfg, out, echo=lambda _: None)
    for name in ("config.yaml", "last.pt", "best.pt", "log.csv", "curves.png"):
        assert (out / name).is_file(), name
    assert load_config(out / "config.yaml") == cfg
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    assert 0 <= float(rows[0]["mAP"]) <= 1 and int(rows[0]["queries"]) > 0
    assert float(rows[0]["images_per_s"]) > 0
    assert summary["best"]["epoch"] == 1
    # what `reid export` reads: plain data, the model config inside the run's config
    best = torch.load(out / "best.pt", weights_only=True)
    assert {"model", "config", "metrics", "epoch"} <= set(best)
    assert best["config"]["model"] == cfg.model.to_dict()
    assert best["epoch"] == 1 and "mAP" in best["metrics"]
    model, _ = load_checkpoint_model(out / "best.pt")
    assert isinstance(model, EmbeddingModel)
    last = torch.load(out / "last.pt", weights_only=True)
    for key in ("loss", "optimizer", "scheduler", "scaler", "global_step", "rng", "history"):
        assert key in last
    assert last["loss"]["arcface.weight"].shape[0] == 4 * cfg.loss.subcenters  # 4 flanks


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_kill_ends_with_the_same_weights(tiny_config, tmp_path):
    cfg = tiny_config("schedule.epochs=2")
    straight = tmp_path / "straight"
    fit(cfg, straight, echo=lambda _: None)

    def kill_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/2"):
            raise Killed  # after last.pt of epoch 1 is written

    interrupted = tmp_path / "interrupted"
    with pytest.raises(Killed):
        fit(cfg, interrupted, echo=kill_after_first_epoch)
    assert torch.load(interrupted / "last.pt", weights_only=True)["epoch"] == 1
    fit(cfg, interrupted, resume=True, echo=lambda _: None)

    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(interrupted / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"]
    assert states_equal(a["model"], b["model"])
    assert states_equal(a["loss"], b["loss"])
    for key in ("loss", "arcface", "triplet", "mAP", "lr"):
        assert [r[key] for r in a["history"]] == [r[key] for r in b["history"]]
    assert (straight / "log.csv").read_text().count("\n") == 3
    assert len((interrupted / "log.csv").read_text().splitlines()) == 3


def test_a_finished_run_is_not_overwritten(tiny_config, tmp_path):
    cfg = tiny_config("schedule.epochs=1")
    fit(cfg, tmp_path / "run", echo=lambda _: None)
    from reid.errors import ReidError

    with pytest.raises(ReidError, match="--resume"):
        fit(cfg, tmp_path / "run", echo=lambda _: None)
    with pytest.raises(ReidError, match="no last.pt"):
        fit(cfg, tmp_path / "elsewhere", resume=True, echo=lambda _: None)


def test_fine_tuning_starts_from_a_release(tiny_config, tmp_path):
    first = tiny_config("schedule.epochs=1", "model.embedding_dim=24")
    fit(first, tmp_path / "base", echo=lambda _: None)
    model, ckpt = load_checkpoint_model(tmp_path / "base" / "best.pt")
    release = save_release(model, tmp_path / "release", name="base", training_data="t",
                           metrics={}, licence=ATRW)  # fmt: skip
    # the release's architecture wins over the config's (embedding_dim 32 in tiny.yaml)
    cfg = tiny_config("schedule.epochs=1", f"run.init={release}", "optim.lr=1e-9")
    lines = []
    fit(cfg, tmp_path / "tuned", echo=lines.append)
    assert any("starting from release base" in line for line in lines)
    tuned = load_config(tmp_path / "tuned" / "config.yaml")
    assert tuned.model.embedding_dim == 24 and tuned.model.pretrained is None
    state = torch.load(tmp_path / "tuned" / "last.pt", weights_only=True)
    assert state["loss"]["arcface.weight"].shape == (4 * tuned.loss.subcenters, 24)
    # tiny learning rates: the weights stay close to the release's
    w0, w1 = model.state_dict()["fc.weight"], state["model"]["fc.weight"]
    assert torch.allclose(w0, w1, atol=1e-3)
    # the starting release's licence travels through the checkpoint into the export, and
    # through a blend with another release
    assert state["licence"]["summary"] == ATRW.summary
    out = runner.invoke(app, ["export", "model", str(tmp_path / "tuned" / "best.pt"),
                              "--out", str(tmp_path / "exported")])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert of_release(tmp_path / "exported") == ATRW
    assert "CC BY-NC-SA" in (tmp_path / "exported" / "README.md").read_text()
    plain = save_release(model, tmp_path / "plain", name="p", training_data="t", metrics={})
    assert of_release(plain) is None and not (plain / "LICENSE").exists()
    first_ckpt = str(tmp_path / "base" / "best.pt")  # trained from scratch: no licence
    out = runner.invoke(app, ["export", "model", first_ckpt, "--out", str(tmp_path / "b"),
                              "--blend", str(release), "--blend-weight", "0.5"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert of_release(tmp_path / "b") == ATRW
    out = runner.invoke(app, ["export", "model", first_ckpt, "--out", str(tmp_path / "c")])
    assert out.exit_code == 0 and of_release(tmp_path / "c") is None


runner = CliRunner()


def test_train_command_help_and_errors(tiny_catalogue, tmp_path):
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for needle in ("--config", "--resume", "--init", "--out", "KEY=VALUE", "torchrun"):
        assert needle in result.output
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2 and "error: give --config" in result.output
    result = runner.invoke(app, ["train", "-c", "training/configs/tiny.yaml", "optim.lrr=1"])
    assert result.exit_code == 2 and "did you mean optim.lr" in result.output
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "error:" in result.output


def test_train_command_runs_and_resumes(tiny_catalogue, tmp_path):
    out = tmp_path / "cli-run"
    args = ["train", "-c", "training/configs/tiny.yaml", f"data.manifest={tiny_catalogue}"]
    result = runner.invoke(app, [*args, "schedule.epochs=1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.output and "best: epoch 1" in result.output
    # continue the finished run for one more epoch
    result = runner.invoke(app, ["train", "--resume", str(out), "schedule.epochs=2"])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "epoch 2/2" in result.output
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert load_config(out / "config.yaml").schedule.epochs == 2
    assert not math.isnan(float(rows[1]["loss"]))


def test_resume_with_more_epochs_applies_overrides_and_rebuilds_the_schedule(tiny_config, tmp_path):
    from training.optim import warmup_cosine

    out = tmp_path / "run"
    fit(tiny_config("schedule.epochs=1"), out, echo=lambda _: None)
    done = torch.load(out / "last.pt", weights_only=True)
    spe = done["global_step"]  # steps per epoch
    cfg = tiny_config("schedule.epochs=3", "optim.lr=2e-3", "optim.weight_decay=0.05")
    lines = []
    summary = fit(cfg, out, resume=True, echo=lines.append)
    changed = "\n".join(line for line in lines if "changed" in line)
    for needle in ("schedule.epochs 1 -> 3", "optim.lr 0.001 -> 0.002", "optim.weight_decay"):
        assert needle in changed, lines
    assert any(line.startswith("epoch 3/3") for line in lines)
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and last["global_step"] == 3 * spe and summary["epochs"] == 3
    assert [r["epoch"] for r in last["history"]] == [1, 2, 3]
    # the warm-up + cosine is rebuilt for 3 epochs, at the step the run had reached, on the
    # new base learning rate (the optimiser's saved state no longer hides the override)
    factor = warmup_cosine(3 * spe, round(cfg.schedule.warmup_epochs * spe), 0.01)
    for row in last["history"][1:]:
        assert row["lr"] == pytest.approx(2e-3 * factor(row["step"]))
        assert row["backbone_lr"] == pytest.approx(1e-3 * factor(row["step"]))
    assert last["history"][1]["lr"] > 0.2 * 2e-3  # mid-cosine, not stuck at the old floor
    groups = last["optimizer"]["param_groups"]
    assert {g["weight_decay"] for g in groups} == {0.0, 0.05}
    assert sorted({g["initial_lr"] for g in groups}) == [1e-3, 2e-3]
    assert load_config(out / "config.yaml") == cfg


@pytest.mark.parametrize(
    "override",
    ["model.embedding_dim=24", "model.backbone=efficientnet_lite0", "data.split_seed=3",
     "data.train_ratio=0.5", "data.manifest=OTHER", "loss.subcenters=3",
     "augment.flip_as_new_identity=true"],
)  # fmt: skip
def test_resume_refuses_overrides_that_cannot_change_mid_run(tiny_config, tmp_path, override):
    from reid.errors import ReidError

    out = tmp_path / "run"
    fit(tiny_config("schedule.epochs=1"), out, echo=lambda _: None)
    before = (out / "last.pt").read_bytes()
    key = override.split("=")[0]
    override = override.replace("OTHER", str(tmp_path / "another-catalogue"))
    with pytest.raises(ReidError, match=f"{key}.*cannot change") as e:
        fit(tiny_config("schedule.epochs=2", override), out, resume=True, echo=lambda _: None)
    assert "start a new run" in str(e.value)
    assert (out / "last.pt").read_bytes() == before


def test_train_command_resume_names_changes_and_refusals(tiny_catalogue, tmp_path):
    out = tmp_path / "cli-run"
    args = ["train", "-c", "training/configs/tiny.yaml", f"data.manifest={tiny_catalogue}"]
    assert runner.invoke(app, [*args, "schedule.epochs=1", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["train", "--resume", str(out), "model.embedding_dim=8"])
    assert result.exit_code == 2 and "model.embedding_dim" in result.output
    assert "cannot change" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["train", "--resume", str(out), "schedule.epochs=3"])
    assert result.exit_code == 0, result.output
    assert "schedule.epochs 1 -> 3" in result.output
    assert "epoch 2/3" in result.output and "epoch 3/3" in result.output
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    # a finished run resumed without more epochs says so and trains nothing
    result = runner.invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0 and "nothing to train" in result.output
    result = runner.invoke(app, ["train", "--resume", str(out), "schedule.epochs=2"])
    assert result.exit_code == 2 and "already completed 3 epochs" in result.output


def test_rehearsal_flanks_train_beside_the_catalogue_but_are_never_evaluated(
    tiny_config, tmp_path
):
    fit(tiny_config("schedule.epochs=1"), tmp_path / "plain", echo=lambda _: None)
    lines: list[str] = []
    cfg = tiny_config("schedule.epochs=1", "data.rehearsal=demo",
                      "data.rehearsal_individuals=1", "sampler.rehearsal_identities=1",
                      f"data.synthetic_dir={tmp_path / 'synth'}")  # fmt: skip
    out = tmp_path / "mixed"
    summary = fit(cfg, out, echo=lines.append)
    last = torch.load(out / "last.pt", weights_only=True)
    # 4 catalogue flanks + 1 individual per species of the preset, both flanks
    n_classes = last["loss"]["arcface.weight"].shape[0] // cfg.loss.subcenters
    assert n_classes > 4
    assert any("rehearsal:" in line and "(2+1)x2" in line for line in lines)
    # evaluated on the catalogue's held-out individuals only
    def queries(run):
        return [r["queries"] for r in csv.DictReader((tmp_path / run / "log.csv").open())]

    assert queries("mixed") == queries("plain") and summary["best"]["epoch"] == 1
    with pytest.raises(Exception, match="rehearsal_identities"):
        tiny_config("data.rehearsal=demo")
