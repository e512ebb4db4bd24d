"""Typed config: YAML + dotted overrides, coerced by field type; clear errors."""

from pathlib import Path

import pytest

from training.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
TINY = CONFIGS / "tiny.yaml"
DEFAULT = CONFIGS / "default.yaml"


def test_shipped_configs_load():
    tiny = load_config(TINY)
    assert tiny.model.backbone == "test_efficientnet" and tiny.model.input_size == (32, 64)
    default = load_config(DEFAULT)
    assert default.data.synthetic == "synth-train-v1"
    assert default.model.input_size == (160, 320) and default.model.pretrained == "imagenet"
    for name in ("nyala.yaml", "atrw.yaml"):  # real catalogues: fine-tune a release
        cfg = load_config(CONFIGS / name)
        assert cfg.data.manifest is not None and cfg.data.synthetic is None
    from reid.presets import get_preset

    assert get_preset("synth-train-v2").images == 19_200


def test_overrides_are_coerced_to_the_field_types():
    cfg = load_config(
        TINY,
        [
            "optim.lr=3e-4",  # YAML would read this as a string
            "schedule.epochs=5",
            "schedule.warmup_epochs=2",
            "model.input_size=48,96",
            "augment.crop_scale=[0.5, 0.9]",
            "run.deterministic=false",
            "optim.grad_clip=null",
            "sampler.batches_per_epoch=7",
            "run.amp=fp16",
        ],
    )
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.schedule.epochs == 5 and isinstance(cfg.schedule.epochs, int)
    assert cfg.schedule.warmup_epochs == 2.0 and isinstance(cfg.schedule.warmup_epochs, float)
    assert cfg.model.input_size == (48, 96)
    assert cfg.augment.crop_scale == (0.5, 0.9)
    assert cfg.run.deterministic is False
    assert cfg.optim.grad_clip is None
    assert cfg.sampler.batches_per_epoch == 7
    assert cfg.run.amp == "fp16"


def test_a_data_source_on_the_command_line_replaces_the_files(tmp_path):
    cfg = load_config(DEFAULT, [f"data.manifest={tmp_path}"])
    assert cfg.data.manifest == str(tmp_path) and cfg.data.synthetic is None
    cfg = load_config(TINY, ["data.synthetic=synth-bench-v1"])
    assert cfg.data.synthetic == "synth-bench-v1" and cfg.data.manifest is None


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("optim.lrr=1", ["optim.lrr", "did you mean optim.lr"]),
        ("optimizer.lr=1", ["optimizer", "did you mean optim"]),
        ("optim=1", ["optim", "section"]),
        ("schedule.epochs=abc", ["schedule.epochs", "int"]),
        ("schedule.epochs=2.5", ["schedule.epochs"]),
        ("run.amp=fp32", ["run.amp", "'bf16'"]),
        ("model.input_size=1,2,3", ["model.input_size", "2 values"]),
        ("run.deterministic=maybe", ["run.deterministic", "bool"]),
        ("schedule.epochs=null", ["schedule.epochs"]),
        ("model.pooling=max", ["pooling", "max"]),
        ("data.train_ratio=1.5", ["data.train_ratio", "(0, 1)"]),
        ("data.synthetic=nope", ["data.synthetic", "nope"]),
        ("augment.erasing_p=2", ["augment.erasing_p"]),
        ("epochs", ["epochs", "section.key=value"]),
    ],
)
def test_bad_overrides_are_named(override, needles):
    with pytest.raises(ConfigError) as info:
        load_config(TINY, [override])
    for needle in needles:
        assert needle in str(info.value)


def test_both_or_no_data_source_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of data.manifest"):
        load_config(TINY, [f"data.manifest={tmp_path}", "data.synthetic=demo"])
    with pytest.raises(ConfigError, match="exactly one of data.manifest"):
        load_config(None)


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  synthetic: demo\noptim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "bad.yaml" in str(info.value) and "optim.learning_rate" in str(info.value)
    bad.write_text("data: [1, 2]\n")
    with pytest.raises(ConfigError, match="is a section"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_reads_back_identically(tmp_path):
    cfg = load_config(TINY, ["optim.lr=3e-4", "model.input_size=48,96"])
    path = save_config(cfg, tmp_path / "config.yaml")
    assert load_config(path) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert isinstance(cfg, TrainConfig)
    plain = config_to_dict(cfg)
    assert plain["model"]["input_size"] == [48, 96]  # plain lists, as ModelConfig.to_dict
    assert plain["model"] == cfg.model.to_dict()


# --------------------------------------------------------------------------- extends


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_extends_layers_a_file_over_its_base(tmp_path):
    _write(
        tmp_path / "base.yaml", "data: {synthetic: demo}\noptim: {lr: 0.002, weight_decay: 0.05}\n"
    )
    _write(tmp_path / "mid.yaml", "extends: base.yaml\noptim: {lr: 0.001}\nschedule: {epochs: 4}\n")
    top = _write(tmp_path / "top.yaml", "extends: mid.yaml\nschedule: {epochs: 5}\n")
    cfg = load_config(top, ["run.seed=7"])
    assert cfg.data.synthetic == "demo"
    assert cfg.optim.lr == 0.001 and cfg.optim.weight_decay == 0.05  # key by key, not section
    assert cfg.schedule.epochs == 5 and cfg.run.seed == 7
    assert "extends" not in config_to_dict(cfg)
    # the saved config is self-contained: it loads without its bases
    saved = save_config(cfg, tmp_path / "run" / "config.yaml")
    (tmp_path / "base.yaml").unlink()
    assert load_config(saved) == cfg


def test_extends_a_data_source_replaces_the_bases(tmp_path):
    _write(tmp_path / "base.yaml", "data: {manifest: photos.csv, train_ratio: 0.7}\n")
    top = _write(tmp_path / "top.yaml", "extends: base.yaml\ndata: {synthetic: demo}\n")
    cfg = load_config(top)
    assert cfg.data.synthetic == "demo" and cfg.data.manifest is None
    assert cfg.data.train_ratio == 0.7


def test_extends_errors_name_the_file(tmp_path):
    a = _write(tmp_path / "a.yaml", "extends: b.yaml\n")
    _write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circle"):
        load_config(a)
    missing = _write(tmp_path / "m.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_config(missing)
    bad = _write(tmp_path / "n.yaml", "extends: [a.yaml, b.yaml]\n")
    with pytest.raises(ConfigError, match="one config file"):
        load_config(bad)
    _write(tmp_path / "typo.yaml", "optim: {lrr: 0.1}\ndata: {synthetic: demo}\n")
    child = _write(tmp_path / "child.yaml", "extends: typo.yaml\n")
    with pytest.raises(ConfigError, match="child.yaml.*did you mean optim.lr"):
        load_config(child)
