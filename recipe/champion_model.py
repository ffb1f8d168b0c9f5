"""The champion's pyfunc entry point, logged as MLflow "model from code" (no pickled object in the artefact).

MLflow runs this file when it loads the model; the ``recipe`` package travels beside it (``code_paths``).
"""

import mlflow

from recipe.champion import ChampionModel

mlflow.models.set_model(ChampionModel())
