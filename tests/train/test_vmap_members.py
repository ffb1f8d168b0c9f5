"""recipe.train.vmap.fit_members: seed members trained as one vectorised model equal separate runs."""

from __future__ import annotations

import pytest
import torch

from recipe.config import RecipeConfig
from recipe.data import load_data
from recipe.fit import build_for, fit
from recipe.train.vmap import fit_members, vmappable


@pytest.fixture
def wine(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_DATA_DIR", str(tmp_path / "data_home"))
    cfg = RecipeConfig(
        name="vmap-test",
        data={"source": "csv", "name": "wine", "batch_size": 32},
        model={"name": "mlp", "width": 16, "depth": 2},
        optim={"name": "adam", "lr": 1e-2, "weight_decay": 1e-4},
        schedule={"name": "cosine"},
        budget={"epochs": 4},
        trainer={"progress": False},
    )
    return cfg, load_data(cfg)


def test_each_vmapped_member_equals_its_separate_run(wine):
    cfg, data = wine
    cfgs = [cfg.with_overrides({"seed": s}) for s in (0, 1, 2)]
    together = fit_members(cfgs, data, epochs=4)
    for c, m in zip(cfgs, together, strict=True):
        alone = fit(c, data, epochs=4, evaluate=False, log=False, validate=False).model.cpu()
        for (name, a), b in zip(alone.state_dict().items(), m.state_dict().values(), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=f"seed {c.seed}, {name}")
    w0, w1 = (next(iter(m.state_dict().values())) for m in together[:2])
    assert not torch.allclose(w0, w1)  # different seeds, different members


def test_what_cannot_be_vmapped_is_named(wine):
    cfg, data = wine
    net = build_for(cfg, data)
    assert vmappable([cfg, cfg.with_overrides({"seed": 1})], net) == ""
    assert "seed" in vmappable([cfg, cfg.with_overrides({"optim.lr": 0.1})], net)
    assert "clipping" in vmappable([cfg.with_overrides({"trainer.grad_clip": 1.0})] * 2, net)
    assert "dropout" in vmappable([cfg.with_overrides({"model.dropout": 0.2})] * 2, net)
    with_bn = torch.nn.Sequential(torch.nn.Linear(13, 8), torch.nn.BatchNorm1d(8))
    assert "batch norm" in vmappable([cfg, cfg.with_overrides({"seed": 1})], with_bn)
    with pytest.raises(ValueError, match="clipping"):
        fit_members([cfg.with_overrides({"trainer.grad_clip": 1.0})] * 2, data, epochs=1)
