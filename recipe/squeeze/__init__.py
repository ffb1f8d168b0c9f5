"""Stage 6's parts: candidates scored as ensembles, the trainings behind them, the once-read test split, and what
is published (the registered champion, tables, figure, model card). The stage itself is recipe.stages.squeeze."""
