"""The MLflow adapter: runs, the model bundle, registration, the monitoring reference. Nothing in the core imports it."""
