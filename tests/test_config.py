from dataclasses import dataclass, field

import pytest

from unif2ace.config import apply_overrides, from_dict, load_yaml, save_yaml, to_dict
from unif2ace.errors import UserError


@dataclass
class Inner:
    width: int = 64
    act: str = "gelu"
    rates: tuple[float, ...] = (0.1, 0.2)


@dataclass
class Outer:
    name: str = "run"
    lr: float = 1e-4
    use_ema: bool = False
    steps: int | None = None
    model: Inner = field(default_factory=Inner)


def test_roundtrip_yaml(tmp_path):
    cfg = Outer(name="x", lr=3e-4, model=Inner(width=32))
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(Outer, tmp_path / "c.yaml") == cfg
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unknown_keys_are_rejected_with_the_valid_list():
    with pytest.raises(UserError, match=r"unknown config key\(s\) model.widht.*width, act"):
        from_dict(Outer, {"model": {"widht": 3}})
    with pytest.raises(UserError, match="unknown config key 'model.depth'"):
        apply_overrides(Outer(), ["model.depth=3"])
    with pytest.raises(UserError, match="unknown config section 'optim'"):
        apply_overrides(Outer(), ["optim.lr=3"])


def test_missing_keys_take_defaults_so_old_checkpoints_load():
    old = {"name": "old", "model": {"width": 16}}  # saved before lr/rates/act existed
    cfg = from_dict(Outer, old)
    assert cfg.model.width == 16 and cfg.model.act == "gelu" and cfg.lr == 1e-4


def test_dotted_overrides_parse_and_type_check():
    cfg = apply_overrides(
        Outer(), ["model.width=128", "lr=2e-3", "use_ema=true", "steps=10", "model.rates=[0.5]"]
    )
    assert (cfg.model.width, cfg.lr, cfg.use_ema, cfg.steps) == (128, 2e-3, True, 10)
    assert cfg.model.rates == (0.5,)
    with pytest.raises(UserError, match="expected an integer"):
        apply_overrides(Outer(), ["model.width=wide"])
    with pytest.raises(UserError, match="key.sub=value"):
        apply_overrides(Outer(), ["model.width"])
    assert apply_overrides(Outer(), ["steps=null"]).steps is None
