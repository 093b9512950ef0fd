"""Drifted batches kept and pinned; notifications to a webhook on 127.0.0.1."""
from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest
import yaml

from pipeline.core.config import Config, NotifyConfig
from pipeline.core.keep import keep_batch, kept_batches, training_folder
from pipeline.core.provenance import collect_provenance, dvc_hash


def _frame(labels: bool) -> pd.DataFrame:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0]})
    return frame.assign(label=[0, 1, 0]) if labels else frame


def test_a_kept_batch_is_dated_pinned_and_found_again(tmp_path):
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "batch.csv"
    _frame(True).to_csv(src, index=False)
    kept = keep_batch(src, tmp_path / "drifted", tmp_path, labelled=True, day=dt.date(2026, 3, 4))
    assert kept.path.parent.name == "2026-03-04" and kept.path.read_bytes() == src.read_bytes()
    assert kept.path.name == f"batch-{kept.md5[:8]}.csv" and kept.md5 == dvc_hash(src)
    out = yaml.safe_load(kept.pointer.read_text())["outs"][0]
    assert out == {"md5": kept.md5, "size": src.stat().st_size, "hash": "md5", "path": kept.path.name}
    again = keep_batch(src, tmp_path / "drifted", tmp_path, labelled=True, day=dt.date(2026, 3, 4))
    assert again.path == kept.path
    unl = tmp_path / "in" / "unlabelled.csv"
    _frame(False).to_csv(unl, index=False)
    keep_batch(unl, tmp_path / "drifted", tmp_path, labelled=False, day=dt.date(2026, 3, 5))
    found = kept_batches(tmp_path / "drifted")
    assert [(k.path.name, k.labelled) for k in found] == [(kept.path.name, True),
                                                         (f"unlabelled-{dvc_hash(unl)[:8]}.csv", False)]


def test_the_retraining_folder_holds_pinned_data_and_only_labelled_batches(tmp_path):
    pinned = tmp_path / "data"
    pinned.mkdir()
    pd.concat([_frame(True)] * 2).to_csv(pinned / "train.csv", index=False)
    for name, labels in (("l.csv", True), ("u.csv", False)):
        _frame(labels).assign(extra=1).to_csv(tmp_path / name, index=False)
        keep_batch(tmp_path / name, tmp_path / "drifted", tmp_path, labelled=labels, day=dt.date(2026, 1, 2))
    folder = training_folder(pinned, kept_batches(tmp_path / "drifted"), tmp_path / "retrain", ["a", "b", "label"])
    files = sorted(p.name for p in folder.iterdir())
    assert files[0].startswith("drifted-2026-01-02-l-") and files[1] == "pinned-train.csv" and len(files) == 2
    assert list(pd.read_csv(folder / files[0]).columns) == ["a", "b", "label"]
    prov = collect_provenance(tmp_path, tuple(str(folder / f) for f in files), folder)
    sources = prov.as_tags()["data.sources"]
    assert sources.startswith(f"{files[0]}={dvc_hash(folder / files[0])}") and "pinned-train.csv=" in sources


class _Receiver(BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.got.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def receiver():
    _Receiver.got = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.got
    server.shutdown()
    server.server_close()
    thread.join()


def test_one_message_reaches_the_webhook(receiver, monkeypatch):
    from flows import verdicts

    url, got = receiver
    monkeypatch.setattr(verdicts, "get_run_logger", lambda: pytest.fail("no warning expected"))
    verdicts.notify(Config(notify=NotifyConfig(webhook_url=url)), "mpops: drift in b.csv", "feature drift: 3 of 64")
    [(path, body)] = got
    assert path == "/hook" and body["title"] == "mpops: drift in b.csv" and body["message"] == "feature drift: 3 of 64"


def test_no_url_no_message_and_a_dead_url_only_warns(receiver, monkeypatch):
    import logging

    from flows import verdicts

    _, got = receiver
    verdicts.notify(Config(), "t", "b")
    assert got == []
    warned = []
    monkeypatch.setattr(verdicts, "get_run_logger", lambda: logging.getLogger("t"))
    monkeypatch.setattr(logging.getLogger("t"), "warning", lambda *a: warned.append(a))
    dead = Config(notify=NotifyConfig(webhook_url="http://127.0.0.1:9/hook", timeout_s=2))
    verdicts.notify(dead, "t", "b")
    assert warned and warned[0][1] == "notification"


def test_the_webhook_url_is_never_logged_as_a_parameter():
    cfg = Config(notify=NotifyConfig(webhook_url="https://hooks.example/secret-token"))
    assert cfg.as_flat_dict()["notify.webhook_url"] == "set"


def test_inside_a_dvc_project_the_kept_batch_is_added_to_dvc_and_its_cache(tmp_path):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    src = tmp_path / "batch.csv"
    _frame(True).to_csv(src, index=False)
    kept = keep_batch(src, tmp_path / "incoming" / "drifted", tmp_path, labelled=True, day=dt.date(2026, 3, 4))
    assert kept.cached
    md5 = yaml.safe_load(kept.pointer.read_text())["outs"][0]["md5"]
    assert md5 == kept.md5 and (tmp_path / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).is_file()
