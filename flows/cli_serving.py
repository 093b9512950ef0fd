"""`mpops` commands around serving: serve-model (HTTP scoring) and rollback."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli_base import ConfigOpt, ModelUriOpt, app, say, tracking_uri
from flows.common import resolve


@app.command("serve-model")
def serve_model(model_uri: Optional[str] = ModelUriOpt,
                port: int = typer.Option(5001, "--port", min=1, max=65535),
                host: str = typer.Option("127.0.0.1", "--host", help="the address to listen on"),
                allow_fallback: bool = typer.Option(False, "--allow-fallback",
                                                    help="serve in the precision's fallback where this device "
                                                         "cannot run it (reported in every response's headers; "
                                                         "default: off)"),
                config: Optional[Path] = ConfigOpt) -> None:
    """Serve a registered model over HTTP (MLflow's scoring server: POST /invocations, GET /ping) until stopped."""
    import uvicorn

    from pipeline.tracking.serving import load_served, scoring_app

    _, cfg = resolve(config)
    tracking_uri()
    served = load_served(model_uri or f"models:/{cfg.registry.model_name}@champion", allow_fallback)
    fallback = "" if served.served_precision == served.trained_precision else \
        f" (FALLBACK: trained in {served.trained_precision}, as --allow-fallback asked)"
    say(f"serving {served.name or served.model_uri} version {served.version or '-'} in "
        f"{served.served_precision}{fallback} on http://{host}:{port}/invocations (Ctrl+C stops)")
    uvicorn.run(scoring_app(served), host=host, port=port, log_level="warning")


@app.command()
def rollback(reason: str = typer.Option(..., "--reason", help="why: recorded with who and when"),
             to: Optional[str] = typer.Option(None, "--to", help="version to move champion to "
                                                                 "(default: the previous champion)"),
             force: bool = typer.Option(False, "--force", help="accept an incomplete version or one that failed "
                                                               "its gate or servability check (default: off)"),
             config: Optional[Path] = ConfigOpt) -> None:
    """Move `champion` back to the previous champion (or --to VERSION), recorded in the promotion history."""
    from pipeline.tracking.rollback import rollback as do_rollback

    _, cfg = resolve(config)
    tracking_uri()
    moved = do_rollback(cfg.registry.model_name, reason, to, force)
    say(f"champion of {cfg.registry.model_name}: version {moved.from_version or '-'} -> {moved.to_version} "
        f"({moved.reason})")
