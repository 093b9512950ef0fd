"""The batch scoring flow, `mpops predict`: score a file in chunks with the champion (or a given model) and run
the drift monitor on the same rows in the same pass; one MLflow run per batch (the monitoring run of the batch,
with the scoring's figures). Wiring only: chunks in pipeline.core.chunks, drift in flows.monitoring's tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import prepare_process, resolve
from flows.monitoring import load_champion, monitor_batch, write_drift_report
from flows.verdicts import publish_drift, publish_scoring
from pipeline.core.batch import Batch, load_batch
from pipeline.core.chunks import Reservoir, input_files, numeric_features, score_file
from pipeline.core.config import Config
from pipeline.core.drift import DriftReport
from pipeline.core.errors import DataValidationError
from pipeline.tracking import runs
from pipeline.tracking.predict import encoded_prepare, score_whole
from pipeline.tracking.reference import Champion
from pipeline.tracking.store import setup_tracking


@dataclass(frozen=True)
class PredictOutcome:
    rows: int
    output: str
    model_uri: str
    model_name: str
    model_version: str
    precision: str
    drift: DriftReport
    run_id: str  # one MLflow run for the batch
    report_dir: Path


def _is_table(path: str) -> bool:
    try:
        input_files(path)
    except DataValidationError:
        return False
    return True


@task(name="score-file", cache_policy=NO_CACHE)
def score(cfg: Config, champion: Champion, input_path: str, output_path: str, columns: dict[str, Any]
          ) -> tuple[int, Batch]:
    bundle = champion.model.unwrap_python_model().bundle
    features = list(champion.reference.feature_columns)
    if not _is_table(input_path):  # an image folder or an .npz: no chunked reader, scored whole
        n = score_whole(champion.model, input_path, output_path, cfg.data.label_column, columns)
        return n, load_batch(input_path, tuple(features), cfg.data.label_column, bundle.encoder,
                             bundle.image_shape)
    prepare = encoded_prepare(bundle) if bundle.encoder is not None else numeric_features(features)
    sample = Reservoir(cfg.serving.predict_drift_rows, seed=cfg.data.split_seed)
    n = score_file(champion.model.predict, prepare, input_path, output_path, cfg.serving.predict_chunk_rows,
                   cfg.data.label_column, columns, sample)
    if bundle.encoder is None:
        return n, Batch(input_path, sample.x, sample.labels)
    # The sample holds encoded rows: the drift monitor measures those, the champion takes the raw columns.
    x = sample.x
    return n, Batch(input_path, x.astype("float64"), sample.labels, bundle.encoder.inverse_transform(x),
                    x.astype("float32"))


@flow(name="mpops-predict", log_prints=True)
def predict_flow(input: str, output: str, model_uri: str | None = None, config: str | None = None,
                 overrides: dict[str, Any] | list[str] | None = None) -> PredictOutcome:
    """`mpops predict --input PATH --output PATH`: predictions with model name, version and precision columns,
    and the batch's drift verdict. A model this device cannot run in its precision is refused (exit 2)."""
    prepare_process()
    root, cfg = resolve(config, None, None, overrides)
    setup_tracking(root, cfg.registry.unreachable_after_s)
    uri = model_uri or f"models:/{cfg.registry.model_name}@champion"
    champion = load_champion(uri)  # a plain load: no precision fallback
    precision = champion.model.unwrap_python_model().bundle.served_precision
    columns = {"model_name": champion.model_name or uri, "model_version": champion.version or "",
               "precision": precision}
    n, batch = score(cfg, champion, input, output, columns)
    drift = monitor_batch(cfg, champion, batch)
    folder, run_id = write_drift_report(cfg, root, drift, champion, batch)
    runs.log_values(run_id, metrics={"predict.rows": n, "predict.drift_sample_rows": len(batch.x)},
                    tags={"predict.output": str(output)[:5000], "predict.input": str(input)[:5000],
                          "predict.precision": precision, "mlflow.runName": "predict"})
    publish_scoring(n, output, champion.model_name, champion.version, precision)
    publish_drift(drift, (folder / "report.md").read_text(), run_id, champion.model_name, champion.version)
    (get_run_logger().warning if drift.drifted else get_run_logger().info)("predict %s: %d rows; %s", input, n,
                                                                           drift.verdict)
    return PredictOutcome(n, output, uri, columns["model_name"], columns["model_version"], precision, drift,
                          run_id, folder)
