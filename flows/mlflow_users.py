"""Create (or update) an MLflow user without admin rights: ``python -m flows.mlflow_users NAME``.

The compose stack's one-shot ``mlflow-users`` service runs it as the MLflow admin (``MLFLOW_TRACKING_URI``,
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``) to give the Prefect worker a user of its own whose
password is ``RECIPE_MLFLOW_USER_PASSWORD``: flow runs then log with rights to edit runs and register models
(the server's ``default_permission``), never to manage users or permissions. Exit 0 when the user exists with
that password and is not an admin; 2 when the settings are missing; 3 when the server refuses.
"""

from __future__ import annotations

import os
import sys

PASSWORD_ENV = "RECIPE_MLFLOW_USER_PASSWORD"


def ensure_user(tracking_uri: str, name: str, password: str) -> str:
    """Create ``name`` with ``password`` on the MLflow server at ``tracking_uri`` (basic-auth app), or set the
    password of an existing one and take away admin rights; returns "created" or "updated".

    Raises:
        mlflow.exceptions.MlflowException: the server refused (wrong admin credentials, no basic-auth app).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    client = AuthServiceClient(tracking_uri)
    try:
        client.create_user(name, password)
        return "created"
    except MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(getattr(e, "error_code", "")) and "exists" not in str(e).lower():
            raise
    client.update_user_password(name, password)
    client.update_user_admin(name, False)
    return "updated"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not os.environ.get("MLFLOW_TRACKING_URI") or not os.environ.get(PASSWORD_ENV):
        print(f"usage: MLFLOW_TRACKING_URI=... {PASSWORD_ENV}=... python -m flows.mlflow_users NAME", file=sys.stderr)
        return 2
    from mlflow.exceptions import MlflowException

    try:
        what = ensure_user(os.environ["MLFLOW_TRACKING_URI"], argv[0], os.environ[PASSWORD_ENV])
    except MlflowException as e:
        print(f"the MLflow server refused to create user {argv[0]!r}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 3
    print(f"MLflow user {argv[0]!r} {what} (no admin rights)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
