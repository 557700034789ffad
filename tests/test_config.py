import pytest
from hypothesis import given, settings, strategies as st

from clbounds.experiments.config import ConfigError, apply_overrides, config_from_dict, load_config, resolve_config_path, CONFIG_DIR

from conftest import tiny_raw


def test_bundled_configs_validate():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert "quick-simclr-synthetic" in names and "quick-simclr-digits" in names
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'.*did you mean 'lr'"):
        config_from_dict({"optim": {"lrr": 0.1}})


@pytest.mark.parametrize("key,value,pattern", [
    ("method.temperature", 0.0, r"method.temperature=0.0 is out of range: must be > 0"),
    ("method.temperature", -1, r"method.temperature=-1.0 is out of range"),
    ("optim.lr", 0, r"optim.lr=0.0 is out of range: must be > 0"),
    ("optim.batch_size", 1, r"optim.batch_size=1 is out of range: must be >= 2"),
    ("optim.epochs", 1.5, r"optim.epochs=1.5 has the wrong type: expected int, got float"),
    ("optim.lr", "fast", r"optim.lr='fast' has the wrong type: expected float"),
    ("optim.lr", float("nan"), r"optim.lr=nan is not a finite number"),
    ("optim.lr", "inf", r"optim.lr=inf is not a finite number"),
    ("method.name", "simclrr", r"method.name='simclrr' is not allowed: choose one of .*did you mean 'simclr'"),
    ("data.name", "imagenet", r"data.name='imagenet' is not allowed"),
    ("encoder.arch", "vit", r"encoder.arch='vit' is not allowed"),
    ("augment", "abz", r"unknown letter\(s\) z; allowed a-e"),
    ("seed", True, r"seed=True has the wrong type"),
])
def test_invalid_values_name_key_value_and_allowed(key, value, pattern):
    raw = apply_overrides({}, [])
    section, _, leaf = key.rpartition(".")
    (raw.setdefault(section, {}) if section else raw)[leaf] = value
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(raw)


def test_overrides_parse_yaml_scalars_and_are_validated():
    raw = apply_overrides(tiny_raw(), ["optim.lr=0.2", "seed=3", "augment=abcd", "data.image_size=null"])
    cfg = config_from_dict(raw)
    assert cfg.optim.lr == 0.2 and cfg.seed == 3 and cfg.augment == "adcb" and cfg.data.image_size is None
    with pytest.raises(ConfigError, match="must look like key=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match="optim.lr=-0.1 is out of range"):
        config_from_dict(apply_overrides({}, ["optim.lr=-0.1"]))


def test_scientific_notation_without_a_dot_is_a_float():
    assert config_from_dict(apply_overrides({}, ["optim.lr=1e-3"])).optim.lr == 1e-3
    assert config_from_dict({"optim": {"weight_decay": "5e-4"}}).optim.weight_decay == 5e-4


def test_run_id_depends_on_training_not_on_labels_or_probes():
    a = config_from_dict(tiny_raw())
    b = config_from_dict(tiny_raw(name="other", device="cuda", eval__knn_k=5))
    c = config_from_dict(tiny_raw(seed=1))
    assert a.run_id() == b.run_id() != c.run_id()


def test_missing_config_lists_bundled_names():
    with pytest.raises(ConfigError, match="quick-simclr-synthetic"):
        resolve_config_path("no-such-config")


def test_warmup_must_be_shorter_than_training():
    with pytest.raises(ConfigError, match="warmup_epochs=3 must be smaller than optim.epochs=3"):
        config_from_dict(tiny_raw(optim__warmup_epochs=3))


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=5), st.lists(st.integers(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["seed", "augment", "name", "data", "optim", "method", "encoder", "bogus", "color_strength"]),
                       st.one_of(_scalars, st.dictionaries(st.sampled_from(["lr", "name", "epochs", "temperature", "arch", "batch_size", "x"]), _scalars, max_size=3)),
                       max_size=4))
def test_fuzzed_configs_validate_or_raise_config_error(raw):
    try:
        config_from_dict(raw)
    except ConfigError as err:
        assert str(err)
