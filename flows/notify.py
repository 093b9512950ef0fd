"""One message to the configured webhook, through Apprise (already a Prefect dependency).

Apprise speaks to Slack, Teams, e-mail and dozens more from one URL (slack://..., mailto://...); a plain
http(s):// URL is taken as a generic JSON webhook (Apprise's json:// and jsons://), which receives
{"title": ..., "message": ..., "type": ...} in one POST.
"""
from __future__ import annotations

import apprise

from pipeline.core.errors import ConfigError


def apprise_url(url: str) -> str:
    if url.startswith("https://"):
        return "jsons://" + url[len("https://"):]
    if url.startswith("http://"):
        return "json://" + url[len("http://"):]
    return url


def send(url: str, title: str, body: str, timeout_s: float) -> None:
    """Raises when the URL is not one Apprise knows or the message did not go out."""
    sender = apprise.Apprise()
    asset_url = apprise_url(url)
    if not sender.add(asset_url):
        raise ConfigError("notify.webhook_url is not a URL Apprise can send to (http(s)://, slack://, mailto://, ...)")
    for service in sender:
        # Apprise's own default waits minutes on a dead endpoint; a run never waits that long for a message.
        service.socket_connect_timeout = service.socket_read_timeout = timeout_s
    if not sender.notify(title=title, body=body):
        raise OSError("the webhook did not accept the message")
