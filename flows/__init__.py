"""Prefect flows and the CLI: thin wrappers over pipeline/."""
