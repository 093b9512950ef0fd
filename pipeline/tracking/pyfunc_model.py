"""The registered model's code, logged with MLflow's "models from code": MLflow runs this file to load the model.

No pickled Python object is stored: loading needs mpops (installed, or the `pipeline` package that
travels with the model as its code path) and the bundle, which carries a user factory's source.
"""
from mlflow.models import set_model

from pipeline.tracking.pyfunc import PrecisionClassifier

set_model(PrecisionClassifier())
