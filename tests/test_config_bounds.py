"""Every number setting of RecipeConfig has a range, and values outside their meaning are refused naming the key,
the value and the range: out of range either side, non-finite (YAML's ``.inf`` / ``.nan``, ``1e309`` that a float
turns into inf), booleans given for numbers. The settings are derived from the model, so a new number setting
without both bounds fails ``test_every_number_setting_has_both_bounds``.
"""

from __future__ import annotations

import typing

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from recipe.config import (
    ConfigError,
    ParamSpace,
    RecipeConfig,
    _numeric_kinds,
    load_config,
    numeric_bounds,
    numeric_range,
)


def _settings(schema: type[BaseModel], loc: tuple = ()) -> list[tuple]:
    """The location of every number setting under ``schema`` (list items and tuple slots by index; the tune
    space through its ``lr`` entry, which stands for every entry: they share one type)."""
    out: list[tuple] = []
    for name, info in schema.model_fields.items():
        ann, here = info.annotation, (*loc, name)
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        model = next((a for a in [ann, *args] if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is not None:
            out += _settings(model, here)
        elif typing.get_origin(ann) is dict and ParamSpace in typing.get_args(typing.get_args(ann)[1]):
            out += _settings(ParamSpace, (*here, "lr"))
        elif not _numeric_kinds(ann):
            continue
        elif typing.get_origin(ann) is tuple:
            out += [(*here, i) for i in range(len(typing.get_args(ann)))]
        elif typing.get_origin(ann) is list:
            out.append((*here, 0))
        else:
            out.append(here)
    return out


SETTINGS = _settings(RecipeConfig)
IDS = [".".join(map(str, loc)) for loc in SETTINGS]


def _override(loc: tuple, text: str) -> str:
    """A ``--set`` string putting the YAML ``text`` at ``loc`` (a list item or tuple slot: the default with that
    item replaced)."""
    if isinstance(loc[-1], int):
        key = ".".join(map(str, loc[:-1]))
        default = load_config().to_dict()
        for part in loc[:-1]:
            default = default[part]
        items = [yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip() for v in default]
        items[loc[-1]] = text
        return f"{key}=[{', '.join(items)}]"
    return f"{'.'.join(map(str, loc))}={text}"


def _bad_values(loc: tuple) -> list[str]:
    """YAML spellings of values outside the setting's meaning."""
    b = numeric_bounds(loc)
    ints = _numeric_kinds(_annotation(loc)) == {int}
    bad = ["True", ".inf", "-.inf", ".nan", "1e309"]
    if "le" in b or "lt" in b:
        high = b.get("le", b.get("lt"))
        bad.append(repr(int(high) + 1 if ints else (high + abs(high) + 1 if "le" in b else high)))
    if "ge" in b or "gt" in b:
        low = b.get("ge", b.get("gt"))
        bad.append(repr(int(low) - 1 if ints else (low - abs(low) - 1 if "ge" in b else low)))
    return bad


def _annotation(loc: tuple):
    schema, ann = RecipeConfig, None
    for part in loc:
        if isinstance(part, int) or schema is None:
            continue
        info = schema.model_fields.get(part)
        if info is None:  # the space entry's name
            schema = ParamSpace
            continue
        ann = info.annotation
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        schema = next((a for a in [ann, *args] if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return ann


def test_the_settings_are_found():
    keys = set(IDS)
    assert {"data.image_size", "model.width", "budget.epochs", "stages.tune.parallel", "stages.tune.n_trials"} <= keys
    assert {"stages.squeeze.members", "optim.betas.1", "stages.tune.seeds.0", "stages.tune.space.lr.high"} <= keys
    assert len(SETTINGS) > 90


@pytest.mark.parametrize("loc", SETTINGS, ids=IDS)
def test_every_number_setting_has_both_bounds(loc):
    b = numeric_bounds(loc)
    assert b is not None and ({"ge", "gt"} & set(b)) and ({"le", "lt"} & set(b)), (
        f"{'.'.join(map(str, loc))} has no lower and upper bound: give its Field ge/gt and le/lt"
    )


@pytest.mark.parametrize("loc", SETTINGS, ids=IDS)
def test_values_outside_a_settings_meaning_are_refused(loc):
    key = ".".join(map(str, loc))
    for text in _bad_values(loc):
        with pytest.raises(ConfigError) as err:
            load_config(overrides=[_override(loc, text)])
        message = str(err.value)
        assert key in message and "(got " in message, (text, message)
        assert numeric_range(loc) in message, (text, message)


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("budget.epochs=1e2", "budget.epochs", 100),  # YAML 1.1 reads 1e2 as a string; an int setting takes it
        ("data.batch_size=0x10", "data.batch_size", 16),
        ("data.batch_size=1_000", "data.batch_size", 1000),
        ("optim.lr=1e-3", "optim.lr", 1e-3),
        ("stages.tune.parallel='2'", "stages.tune.parallel", 2),
        ("budget.max_steps=2.0", "budget.max_steps", 2),
    ],
)
def test_unusual_spellings_of_sensible_values_are_accepted(override, key, value):
    assert load_config(overrides=[override]).flat()[key] == value


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.batch_size=2.5", "fractional part"),
        ("budget.epochs=1e9", "1 <= budget.epochs <= 10000"),
        ("data.image_size=100000", "4 <= data.image_size <= 4096"),
        ("model.width=1e6", "1 <= model.width <= 4096"),
        ("stages.tune.parallel=10000", "1 <= stages.tune.parallel <= 256"),
        ("stages.tune.seeds=[0, yes]", "not a boolean"),
        ("seed=4294967296", "0 <= seed <= 4294967295"),
    ],
)
def test_the_message_says_what_is_wrong(override, expected):
    with pytest.raises(ConfigError, match=r"invalid --set override") as err:
        load_config(overrides=[override])
    assert expected in str(err.value)
    assert f"[from --set {override}]" in str(err.value)


def test_the_presets_are_inside_the_bounds():
    from recipe.config import preset_names

    for name in preset_names():
        if name == "imagefolder":
            load_config(preset=name, overrides=["data.root=/tmp"])
        else:
            load_config(preset=name)


def test_flows_run_refuses_an_out_of_range_setting_with_exit_2_before_any_server(monkeypatch, tmp_path):
    from flows import cli

    def no_server(*a, **k):  # pragma: no cover - reached only when the check is missing
        raise AssertionError("a server was started for bad input")

    monkeypatch.setattr(cli, "_run_flow", no_server)
    result = CliRunner().invoke(cli.app, ["run", "recipe", "--set", "budget.epochs=1e9"])
    assert result.exit_code == 2, result.output
    assert "budget.epochs" in result.output and "1000000000" in result.output
    assert "1 <= budget.epochs <= 10000" in result.output and "Traceback" not in result.output


def test_flows_config_explain_shows_each_number_settings_range():
    from flows import cli

    result = CliRunner().invoke(cli.app, ["config", "--explain"])
    assert result.exit_code == 0
    assert "(allowed: 1 <= budget.epochs <= 10000)" in result.output
    assert "(allowed: 0 <= model.dropout < 1)" in result.output
