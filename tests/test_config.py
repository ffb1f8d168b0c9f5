import pytest

from recipe.config import ConfigError, RecipeConfig, config_hash, load_config, parse_override, preset_names


def test_presets_ship_and_load():
    assert preset_names() == ["digits", "imagefolder", "tabular"]
    cfg = load_config()
    assert cfg.name == "digits" and cfg.data.source == "digits" and cfg.schedule.name == "constant"
    assert load_config(preset="tabular").data.name == "wine"
    # imagefolder needs the user's folder
    with pytest.raises(ConfigError, match="data.source=imagefolder needs data.root"):
        load_config(preset="imagefolder")
    assert load_config(preset="imagefolder", overrides=["data.root=/some/where"]).data.root.name == "where"


@pytest.mark.parametrize(
    ("override", "path", "value"),
    [
        ("optim.lr=1e-3", ("optim", "lr"), 1e-3),  # YAML 1.1 reads 1e-3 as a string; pydantic makes it a float
        ("budget.epochs=5", ("budget", "epochs"), 5),
        ("budget.max_steps=null", ("budget", "max_steps"), None),
        ("data.augment=[crop, rotate]", ("data", "augment"), ["crop", "rotate"]),
        ("trainer.grad_clip=1.0", ("trainer", "grad_clip"), 1.0),
        ("model.name=mypkg.nets:MyNet", ("model", "name"), "mypkg.nets:MyNet"),
        ("data.split.seed=7", ("data", "split", "seed"), 7),
        ("model.kwargs.hidden=12", ("model", "kwargs"), {"hidden": 12}),
        ("optim.nesterov=true", ("optim", "nesterov"), True),
    ],
)
def test_dotted_overrides_are_typed(override, path, value):
    cfg = load_config(overrides=[override])
    node = cfg
    for part in path:
        node = getattr(node, part)
    assert node == value


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1e-3", r"unknown config key 'optim.lrr': optim has no 'lrr'; did you mean 'optim.lr'\?"),
        (
            "optimizer.lr=1",
            r"unknown config key 'optimizer.lr': the top level has no 'optimizer'; did you mean 'optim'",
        ),
        ("optim.lr=fast", r"optim.lr: Input should be a valid number.*'fast'"),
        ("optim.lr=-1", r"optim.lr: Input should be greater than 0"),
        ("optim.name=adamax", r"optim.name: Input should be 'sgd', 'adam', 'adamw' or 'rmsprop'"),
        ("budget.epochs=2.5", r"budget.epochs: Input should be a valid integer"),
        ("optim.lr.x=1", r"cannot set 'optim.lr.x': optim.lr is a value, not a section"),
        ("noequals", r"must look like key.path=value"),
        ("data.split.val=0.5", r"leaves under 10% to train on"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    before = ["data.split.test=0.45"] if override.startswith("data.split.val") else []
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[*before, override])


def test_unknown_keys_in_a_file_are_errors_with_the_path(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("name: x\noptim:\n  lr: 0.1\n  wieght_decay: 0.1\nbudget:\n  epochs: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(path=f)
    text = str(err.value)
    assert "optim.wieght_decay: unknown key; did you mean 'weight_decay'?" in text
    assert "budget.epochs: Input should be a valid integer" in text  # every problem, not the first


@pytest.mark.parametrize(
    ("content", "message"),
    [("name: [unclosed", "not valid YAML"), ("- a\n- b\n", "the top level must be a mapping")],
)
def test_malformed_files(tmp_path, content, message):
    f = tmp_path / "c.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path=f)


def test_missing_file_and_unknown_preset():
    with pytest.raises(ConfigError, match="config file 'nope.yaml' does not exist"):
        load_config(path="nope.yaml")
    with pytest.raises(
        ConfigError,
        match=r"unknown preset 'digit' \(did you mean 'digits'\?\); the presets are: digits, imagefolder, tabular",
    ):
        load_config(preset="digit")
    with pytest.raises(ConfigError, match="preset='' is empty; a preset is the name of a shipped one: digits"):
        load_config(preset="")  # an unset variable in `--preset "$P"`: not the default preset
    with pytest.raises(ConfigError, match="not both"):
        load_config(preset="digits", path="x.yaml")


def test_hash_is_stable_across_key_order_and_changes_with_values(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("name: t\noptim: {lr: 0.01, name: sgd}\nbudget: {epochs: 3}\n")
    b.write_text("budget: {epochs: 3}\noptim: {name: sgd, lr: 1.0e-2}\nname: t\n")
    ha, hb = load_config(path=a).config_hash(), load_config(path=b).config_hash()
    assert ha == hb and len(ha) == 12
    assert load_config(path=a, overrides=["optim.lr=0.02"]).config_hash() != ha
    assert config_hash(load_config(path=a).to_dict()) == ha


def test_flat_params_and_with_overrides():
    cfg = RecipeConfig()
    flat = cfg.flat()
    assert flat["optim.lr"] == 3e-4 and flat["data.split.val"] == 0.15
    cfg2 = cfg.with_overrides({"optim.lr": 0.1, "budget.epochs": 2})
    assert cfg2.optim.lr == 0.1 and cfg.optim.lr == 3e-4  # a new config; the old one is untouched
    with pytest.raises(ConfigError, match="unknown config key"):
        cfg.with_overrides(["optim.betas2=1"])


def test_parse_override_keeps_strings_for_pydantic():
    assert parse_override("optim.lr=1e-3") == ("optim.lr", "1e-3")
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a.b=") == ("a.b", "")


def test_every_setting_is_documented_in_the_json_schema_and_explain():
    """The Prefect UI form and `flows config --explain` read Field(description=...): none may be missing."""
    from recipe.config import RecipeConfig, explain

    schema = RecipeConfig.model_json_schema()
    sections = [schema, *schema["$defs"].values()]
    undocumented = [k for s in sections for k, v in s["properties"].items() if not v.get("description")]
    assert undocumented == []
    docs = {d.key: d for d in explain()}
    # every leaf key, no more; the tune search space is one documented mapping (its entries are ParamSpace
    # models, whose fields the JSON schema check above covers)
    flat = {k for k in RecipeConfig().flat() if not k.startswith("stages.tune.space.")}
    assert set(docs) == flat | {"stages.tune.space"}
    assert (
        docs["budget.early_stopping"].default is None
        and "restore the best weights" in docs["budget.early_stopping"].description
    )
    assert docs["data.split.val"].type == "float" and docs["data.split.val"].default == 0.15


def test_a_section_rule_names_the_fix_without_echoing_the_section():
    from recipe.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config("imagefolder")
    text = str(e.value)
    assert "data.source=imagefolder needs data.root=PATH/TO/FOLDER" in text
    assert "Value error" not in text and "{" not in text  # no pydantic prefix, no raw dict of the section


def test_the_recipe_name_defaults_to_one_derived_from_the_data(tmp_path):
    """A registered model and an experiment belong to one data set: two CSVs or two folders get two names."""
    from recipe.config import RecipeConfig, load_config, name_for_data

    a = load_config("tabular", overrides=["data.root=/data/house prices (2024).csv", "data.target=y"])
    b = load_config("tabular", overrides=["data.root=/data/churn.csv", "data.target=y"])
    assert (a.name, b.name) == ("house-prices-2024", "churn")
    assert load_config("tabular").name == "wine" and load_config().name == "digits"
    assert load_config("imagefolder", overrides=["data.root=/photos/pets/"]).name == "pets"
    assert RecipeConfig(data={"source": "imagefolder", "root": "/x/cats"}).name == "cats"
    assert RecipeConfig(data={"source": "torchvision", "name": "MNIST"}).name == "MNIST"
    assert load_config("tabular", overrides=["name=mine", "data.root=/d/a.csv", "data.target=y"]).name == "mine"
    # a derived name follows the data when an override changes it; an explicit one stays
    assert b.with_overrides({"data.root": "/d/other.csv"}).name == "other"
    assert b.with_overrides({"seed": 3}).name == "churn"
    assert load_config(overrides=["name=x"]).with_overrides({"data.source": "csv", "data.name": "wine"}).name == "x"
    assert name_for_data({"source": "csv", "root": "/d/%%%.csv"}) == "csv"


def test_an_unknown_key_names_the_close_match_alone_or_else_every_key_it_could_be():
    """A new user's typo under stages.overfit got the fix and then all 19 keys of the section: the list is for a
    key with no close match."""
    cfg = RecipeConfig()
    with pytest.raises(ConfigError) as typo:
        cfg.with_overrides(["stages.overfit.max_rung=1"])
    assert "did you mean 'stages.overfit.max_rungs'?" in str(typo.value) and "known:" not in str(typo.value)
    with pytest.raises(ConfigError) as far:
        cfg.with_overrides(["optim.zzz=1"])
    assert "did you mean" not in str(far.value) and "(known: name, lr, " in str(far.value)
