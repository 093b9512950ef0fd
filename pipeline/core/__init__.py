"""The core: pure stages in plain Python, numpy and torch, usable as a library and testable without a server.

It imports none of mlflow, prefect or rich; the adapters (pipeline.tracking, pipeline.render) and
the wiring (flows/) import it, never the other way round. Nothing here runs on import.
"""
