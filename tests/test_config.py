import dataclasses
import json
import re
import typing

import pytest

from videogan.config import (
    CONDITIONAL_PRESETS,
    FIELD_RANGES,
    PRESETS,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    Range,
    SyntheticConfig,
    TrainConfig,
    from_dict,
    override,
    parse_assignment,
    preset,
    validate,
)


def test_presets():
    p, t = preset("paper"), preset("tiny")
    assert p.clip_shape == [3, 32, 64, 64] and p.train.batch_size == 64
    assert p.train.lr_g == p.train.lr_d == 2e-4 and (p.train.beta1, p.train.beta2) == (0.5, 0.999)
    assert p.train.mask_l1_weight == 0.1 and p.model.z_dim == 100
    assert t.clip_shape == [3, 16, 32, 32]


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset("huge")


def test_conditional_variants_of_the_presets():
    """`--model conditional` picks tiny's and paper's image-to-video variants, keeps a recipe that is one, and
    refuses a two-stream recipe rather than training a model nobody shipped."""
    for name in ("tiny", "paper"):
        plain, conditional = preset(name), preset(name, "conditional")
        assert plain.model.kind == "two-stream" and conditional.model.kind == "conditional"
        assert conditional.train.mask_l1_weight == 0.0 and conditional.model.size == plain.model.size
    assert preset("synthetic-animate", "conditional") == preset("synthetic-animate")
    assert preset("synthetic-animate").model.kind == "conditional"
    with pytest.raises(ConfigError, match="preset 'pedestrians' has no image-to-video variant"):
        preset("pedestrians", "conditional")


def test_one_stream_variants_of_the_presets():
    """`--model one-stream` keeps a two-stream recipe's widths and training, in one stream: a background width
    of the recipe's own (people-64's) goes with the stream it sized, so the variant is a valid config."""
    for name in ("pedestrians", "people-64"):
        two, one = preset(name), preset(name, "one-stream")
        assert one.model.kind == "one-stream" and one.model.background_width == 0
        width = two.model.background_width
        assert dataclasses.replace(one.model, kind="two-stream", background_width=width) == two.model
        assert one.train == two.train and one.data == two.data
        validate(one)
    assert preset("people-64").model.background_width == 256
    assert preset("people-animate").model.background_width == 0  # the input image is its background


def test_the_shipped_models_recipes():
    """What each recipe changes from tiny: the cards' `--set` flags of before, now named (the cards' configs
    are compared field by field in tests/generation/test_pretrained.py)."""
    tiny = preset("tiny")
    p = preset("pedestrians")
    assert (p.data.source, p.train.augment) == ("runs/data-vtest-32", "color,translation,cutout")
    assert p.train.steps == 10_000
    assert p.model == tiny.model and p.synthetic == tiny.synthetic
    s = preset("synthetic")
    assert (s.data.source, s.train.r1_weight, s.train.steps) == ("synthetic", 0.01, 14_000)
    assert s.model == tiny.model
    a = preset("synthetic-animate")
    assert (a.model.input_background, a.model.warp_foreground, a.model.motion_layers) == (True, True, 3)
    assert (a.train.flow_tv_weight, a.train.layer_entropy_weight, a.train.steps) == (5.0, 0.5, 9_000)


def test_overrides_convert_and_check_types():
    cfg = Config()
    override(cfg, "model.g_width", "256")
    override(cfg, "train.lr_g", "1e-3")
    override(cfg, "model.kind", "one-stream")
    assert (cfg.model.g_width, cfg.train.lr_g, cfg.model.kind) == (256, 1e-3, "one-stream")
    with pytest.raises(ConfigError, match="expected an integer"):
        override(cfg, "model.g_width", "wide")
    with pytest.raises(ConfigError, match="expected an integer"):
        override(cfg, "model.g_width", 2.5)
    with pytest.raises(ConfigError, match="not one of"):
        override(cfg, "model.kind", "three-stream")
    with pytest.raises(ConfigError, match="unknown config key 'model.widht'"):
        override(cfg, "model.widht", "1")
    with pytest.raises(ConfigError, match="unknown config section"):
        override(cfg, "optim.lr", "1")
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_assignment("model.g_width")


def test_round_trip_through_json():
    cfg = preset("tiny")
    cfg.train.seed = 7
    again = from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict({"model": {"bogus": 1}})


def test_configs_saved_before_the_data_section_still_load():
    saved = Config().to_dict()
    del saved["data"]
    saved["train"]["data"] = "my_videos/"
    assert from_dict(saved).data.source == "my_videos/"


def test_every_preset_and_every_shipped_model_config_is_valid():
    from videogan.generation import pretrained

    variants = [(name, None) for name in PRESETS] + [(name, "conditional") for name in CONDITIONAL_PRESETS]
    for name, kind in variants:
        cfg = preset(name, kind)
        assert validate(cfg) is cfg
    shipped = pretrained.names()
    assert len(shipped) >= 3
    for name in shipped:  # from_dict validates what it reads
        card = json.loads((pretrained.folder(name) / "model.json").read_text())
        assert from_dict(card["config"]) == pretrained.config(name)


def test_every_numeric_field_has_a_range():
    sections = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig, "synthetic": SyntheticConfig}
    assert [f.name for f in dataclasses.fields(Config)] == list(sections)
    numeric = {f"{section}.{name}" for section, cls in sections.items()
               for name, annotation in typing.get_type_hints(cls).items() if annotation in (int, float)}
    assert numeric == set(FIELD_RANGES)


@pytest.mark.parametrize("key,value", [
    # the values of issue 28 (defect 6)
    ("train.lr_g", "nan"), ("train.lr_g", "-1"), ("train.log_every", "0"), ("model.z_dim", "0"),
    ("train.eval_every", "-1"), ("train.checkpoint_every", "-1"), ("train.ema_decay", "2"),
    ("train.num_threads", "-2"), ("data.workers", "-1"), ("model.frames", "1"),
    ("train.steps", "99999999999999999999999"),
    # and their kin
    ("train.lr_d", "inf"), ("train.beta1", "1"), ("train.beta2", "-0.5"), ("train.batch_size", "0"),
    ("train.grad_accumulation", "0"), ("train.r1_weight", "-0.1"), ("train.r1_every", "0"),
    ("train.mask_l1_weight", "nan"), ("train.lr_decay_start", "-1"), ("train.lr_decay_end", "-1"),
    ("train.keep_checkpoints", "-1"), ("train.sample_every", "-5"),
    ("train.num_samples", "0"), ("train.eval_num", "1"), ("train.seed", str(2**53 + 1)), ("model.size", "48"),
    ("model.channels", "1"), ("model.g_width", "6"), ("model.background_width", "-8"), ("model.d_width", "0"),
    ("model.d_bn_eps", "0"), ("model.z_modes", "-1"),
    ("model.mask_bias_init", "-inf"), ("model.motion_layers", "-1"), ("model.max_flow", "0"),
    ("model.max_flow", "1.5"), ("data.shuffle_buffer", "-1"),
    ("synthetic.max_objects", "0"), ("synthetic.min_radius", "0"), ("synthetic.max_radius", "0.5"),
    ("synthetic.max_speed", "nan"), ("synthetic.background_shapes", "-1"),
])
def test_out_of_range_values_are_refused_naming_the_key_and_value(key, value):
    cfg = preset("tiny")
    override(cfg, key, value)
    with pytest.raises(ConfigError, match=re.escape(key)) as e:
        validate(cfg)
    message = str(e.value)
    assert len(message.splitlines()) == 1 and value.lstrip("-") in message  # the value as given, or as parsed


@pytest.mark.parametrize("sets,message", [
    ({"train.flow_tv_weight": 1.0}, "train.flow_tv_weight=1.0 needs model.warp_foreground"),
    ({"model.kind": "conditional", "model.warp_foreground": True, "train.layer_entropy_weight": 0.5},
     "train.layer_entropy_weight=0.5 needs model.motion_layers"),
    ({"model.kind": "conditional", "train.eval_every": 100}, "train.eval_every=100: FVD during training"),
    ({"train.r1_weight": 0.1, "train.compile": True}, "train.r1_weight=0.1 needs train.compile=false"),
    ({"train.batch_size": 6, "train.grad_accumulation": 4}, "train.batch_size=6 is not divisible"),
    ({"train.lr_decay_start": 500}, "train.lr_decay_end=0 must be after train.lr_decay_start=500"),
    ({"train.lr_decay_start": 500, "train.lr_decay_end": 500},
     "train.lr_decay_end=500 must be after train.lr_decay_start=500"),
    ({"train.steps": 3001, "train.lr_decay_start": 2000, "train.lr_decay_end": 3000},
     "train.steps=3001 runs past train.lr_decay_end=3000"),
    ({"synthetic.min_radius": 0.3}, "synthetic.min_radius=0.3 must be at most synthetic.max_radius=0.22"),
    ({"model.stochastic": True}, "model.stochastic=true applies to the conditional model only"),
    ({"model.kind": "conditional", "model.motion_layers": 2},
     "model.motion_layers=2 needs model.warp_foreground"),
    ({"model.kind": "conditional", "model.max_flow": 0.25},
     "model.max_flow=0.25 needs model.warp_foreground"),
    ({"train.augment": "color,blur"}, "train.augment: unknown blur"),
    ({"model.kind": "one-stream", "model.background_width": 64},
     "model.background_width=64 applies to the two-stream model only"),
    ({"model.background_width": 10}, "model.background_width 10 must be divisible by 4"),
    ({"data.source": ""}, "data.source=''"),
    ({"model.z_modes": 1}, "model.z_modes=1 is a code with one value"),
    ({"model.z_modes": 100}, "model.z_modes=100 must be less than model.z_dim=100"),
    ({"model.kind": "conditional", "model.z_modes": 16},
     "model.z_modes=16 applies to the unconditional models"),
])
def test_fields_that_do_not_fit_together_are_refused(sets, message):
    cfg = preset("tiny")
    for key, value in sets.items():
        override(cfg, key, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(cfg)


def test_values_of_the_wrong_type_from_python_are_refused():
    """The Python API builds dataclasses directly: nothing converted them as `override` does text."""
    with pytest.raises(ConfigError, match=re.escape("model.frames='8': must be an integer in [2, 1024]")):
        validate(Config(model=ModelConfig(frames="8")))
    with pytest.raises(ConfigError, match=re.escape("train.lr_g=None: must be a finite number > 0")):
        validate(Config(train=TrainConfig(lr_g=None)))
    with pytest.raises(ConfigError, match="train.precision='fp16': must be one of fp32, bf16"):
        validate(Config(train=TrainConfig(precision="fp16")))
    with pytest.raises(ConfigError, match="train.tf32='yes': must be a bool"):
        validate(Config(train=TrainConfig(tf32="yes")))
    with pytest.raises(ConfigError, match="train.steps=True: must be an integer"):
        validate(Config(train=TrainConfig(steps=True)))
    assert validate(Config(train=TrainConfig(r1_weight=1))).train.r1_weight == 1  # an int where a float goes


def test_saved_configs_are_validated_when_read():
    saved = preset("tiny").to_dict()
    saved["train"]["log_every"] = 0
    with pytest.raises(ConfigError, match=re.escape("train.log_every=0: must be an integer >= 1")):
        from_dict(saved)


def test_ranges_read_as_math():
    assert [str(r) for r in (Range(), Range(0, low_open=True), Range(1), Range(0, 1, high_open=True),
                             Range(0, 0.5, low_open=True, high_open=True), Range(3, 3))] == \
        ["", "> 0", ">= 1", "in [0, 1)", "in (0, 0.5)", "equal to 3"]
    assert 0 not in Range(0, low_open=True) and 0.5 in Range(0, 1) and 1 not in Range(0, 1, high_open=True)
    assert float("nan") not in Range()
