"""mpops pipeline stages: plain functions over frozen dataclasses, no Prefect."""
