"""Serving a registered model over HTTP with MLflow's scoring server (/invocations, /ping), in the precision it
was registered with on this device, or refused; a fallback only when the caller asks for it, then reported.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import mlflow.pyfunc
from mlflow import MlflowClient

from pipeline.core.device import resolve_device, serving_precision
from pipeline.core.errors import ConfigError
from pipeline.tracking.pyfunc import FALLBACK

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    model_uri: str
    name: str | None
    version: str | None
    trained_precision: str
    served_precision: str
    model: Any  # mlflow.pyfunc.PyFuncModel

    def headers(self) -> dict[str, str]:
        """Sent with every response, so a client sees what answered it."""
        return {"X-Mpops-Model": self.name or self.model_uri, "X-Mpops-Model-Version": self.version or "",
                "X-Mpops-Trained-Precision": self.trained_precision,
                "X-Mpops-Served-Precision": self.served_precision}


def registered_precision(model_uri: str) -> tuple[str | None, str | None, str | None]:
    """Name, version and `precision` tag of a models:/NAME/V or models:/NAME@ALIAS; Nones for other URIs."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    if not model_uri.startswith("models:/"):
        return None, None, None
    client = MlflowClient()
    try:
        name, version = get_model_name_and_version(client, model_uri)
        return name, str(version), client.get_model_version(name, version).tags.get("precision")
    except MlflowException:  # a missing alias or version, or a logged model outside the registry: load says why
        return None, None, None


def load_served(model_uri: str, allow_fallback: bool = False) -> Served:
    """The model ready to serve; a precision this device cannot run is refused before loading (naming the
    fallback), unless `allow_fallback`, and then the fallback is logged and carried in `served_precision`."""
    name, version, precision = registered_precision(model_uri)
    if precision:
        try:
            serving_precision(precision, resolve_device("auto"), allow_fallback)
        except ConfigError as e:
            raise ConfigError(f"{e}: pass --allow-fallback to serve it in that precision") from None
    try:
        model = mlflow.pyfunc.load_model(model_uri, model_config={FALLBACK: allow_fallback})
    except ConfigError:
        raise
    except Exception as e:  # MLflow raises several types for a missing model or alias
        raise ConfigError(f"serve-model: cannot load {model_uri} ({str(e).splitlines()[0][:300]}); "
                          "run `mpops run` first or pass --model-uri") from None
    bundle = model.unwrap_python_model().bundle
    if bundle.served_precision != bundle.trained_precision:
        log.warning("serving %s (trained in %s) in %s, as asked (--allow-fallback)", model_uri,
                    bundle.trained_precision, bundle.served_precision)
    return Served(model_uri, name, version, bundle.trained_precision, bundle.served_precision, model)


def scoring_app(served: Served) -> Any:
    """MLflow's own scoring app (FastAPI), with the precision headers on every response."""
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(served.model)
    headers = served.headers()

    @app.middleware("http")
    async def precision_headers(request, call_next):
        response = await call_next(request)
        response.headers.update(headers)
        return response
    return app
