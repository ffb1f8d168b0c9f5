"""The tune stage's parts, one small module each (as Optuna lays out its own samplers and visualisations).

- :mod:`recipe.tune.space`: the search space from ``stages.tune.space``, resolved around the handed-on config.
- :mod:`recipe.tune.study`: the persisted Optuna study (name, storage, sampler, pruner, resume).
- :mod:`recipe.tune.trial`: one trial (or retraining) from a picklable spec, in any process.
- :mod:`recipe.tune.checks`: the stage's checks (beyond noise, range edges, failures, importances, budget).
- :mod:`recipe.tune.plots`: optimisation history, importances and one slice ("axis") plot per parameter.

Nothing here imports Prefect: the flow hands the stage a way to map trials (``StageContext.map``).
"""
