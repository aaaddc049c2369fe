import json

import pytest

from videogan.config import Config, ConfigError, from_dict, override, parse_assignment, preset


def test_presets():
    p, t = preset("paper"), preset("tiny")
    assert p.clip_shape == [3, 32, 64, 64] and p.train.batch_size == 64
    assert p.train.lr_g == p.train.lr_d == 2e-4 and (p.train.beta1, p.train.beta2) == (0.5, 0.999)
    assert p.train.mask_l1_weight == 0.1 and p.model.z_dim == 100
    assert t.clip_shape == [3, 16, 32, 32]


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset("huge")


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
