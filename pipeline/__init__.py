"""mpops' library, in three floors; each imports only from the floors below it.

    pipeline.core       pure stages: data, validation, precision, models, training, evaluation, gate,
                        promotion, drift statistics, sweep and noise-floor maths (no mlflow, prefect, rich)
    pipeline.render     Markdown, plots, the terminal summary and progress (imports the core)
    pipeline.tracking   MLflow: runs, the model bundle, registration, the monitoring reference (imports the core)

flows/ (Prefect flows, the command line, deployments) wires them together.
"""
