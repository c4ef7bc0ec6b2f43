"""How MLflow's UI (3.17) opens the study: the classic "Model training" view and a saved run-list view with the scores.

Read from mlflow/server/js (3.17.2), not documented by MLflow:

- Whether a page is drawn in the GenAI view ("Agent versions", "Evaluation runs") or the classic one is the
  `workflowType` URL parameter (`genai` or `machine_learning`), else the browser's last choice of the sidebar's
  "GenAI / Model training" switch (localStorage `mlflow.workflowType`, default `genai`). The experiment tag
  `mlflow.experimentKind` (src/tracking.py sets it) no longer decides it: the UI's feature flag for the switch is on,
  and then the experiment kind comes from the workflow type alone. Hence `?workflowType=machine_learning` on every
  address below.
- The run list's columns are kept per browser too, but a *saved view* is an experiment tag that every browser reads:
  `mlflow.sharedViewState.<key>` holding `{"name", "createdAt", "updatedAt", "state"}`, `state` being the JSON of the
  run list's search facets (`orderByKey`, `orderByAsc`) and UI state (`selectedColumns`, column ids like
  ``metrics.`test_score` ``). The list opens it with `?viewStateShareKey=<key>` and names it in its "Views" menu.

`python -m src.mlflow_ui` sets that view (and the classic-view tag) on the local store's experiment, e.g. after
`python -m src tracking import`, and prints the addresses.
"""

from __future__ import annotations

import json
import time

WORKFLOW = "workflowType=machine_learning"  # the classic view, for any page's address
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
STUDY_VIEW = "study"  # the saved view's key: ?viewStateShareKey=study
STUDY_VIEW_NAME = "Study: test scores"
# The run list's score columns (test F-beta, validation F-beta, training minutes) and the cell's keys, best first
STUDY_COLUMNS = (
    "metrics.`test_score`",
    "metrics.`val_best_score`",
    "metrics.`train_minutes`",
    "tags.`model`",
    "tags.`channels`",
    "tags.`patch`",
    "tags.`sample`",
    "tags.`seed`",
)


def study_view_state() -> dict:
    """The run list's state in the saved view: sorted by test score, best first, with the score columns."""
    return {"orderByKey": "metrics.`test_score`", "orderByAsc": False, "selectedColumns": list(STUDY_COLUMNS)}


def study_view_tag(now_ms: int | None = None) -> tuple[str, str]:
    """(key, value) of the experiment tag that holds the saved view, in the envelope MLflow's UI parses."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    envelope = {
        "name": STUDY_VIEW_NAME,
        "createdAt": now_ms,
        "updatedAt": now_ms,
        "state": json.dumps(study_view_state()),
    }
    return SHARED_VIEW_PREFIX + STUDY_VIEW, json.dumps(envelope)


def set_study_view(client, experiment_id: str) -> None:
    """Save the study's run-list view on the experiment; one already there under its key is kept (someone may have
    updated it in the UI)."""
    key, value = study_view_tag()
    if key not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, key, value)


def addresses(base: str, experiment_id: str, run_id: str | None = None, model_id: str | None = None) -> list[str]:
    """The UI's addresses in the classic view: the run list in the study's view, a run, a logged model."""
    root = f"{base.rstrip('/')}/#/experiments/{experiment_id}"
    found = [f"{root}/runs?viewStateShareKey={STUDY_VIEW}&{WORKFLOW}"]
    if run_id:
        found.append(f"{root}/runs/{run_id}?{WORKFLOW}")
    if model_id:
        found.append(f"{root}/models/{model_id}?{WORKFLOW}")
    return found


def main() -> None:
    from src import tracking

    experiment_id = tracking.ensure_store()
    client = tracking.mlflow_client()
    tracking.mark_classic_view(client, experiment_id)
    set_study_view(client, experiment_id)
    print(f"saved the view '{STUDY_VIEW_NAME}' on experiment {experiment_id} of {tracking.tracking_uri()}; open")
    for address in addresses("http://127.0.0.1:5000", experiment_id):
        print(f"    {address}")


if __name__ == "__main__":
    main()
