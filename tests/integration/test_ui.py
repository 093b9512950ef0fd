"""What a reviewer sees in the MLflow UI, checked in a real browser.

One tiny pipeline run fills a temporary SQLite store; `mlflow server` serves it on 127.0.0.1 and
headless Chromium, driven by Debian's chromedriver, opens the pages a reviewer reads before
trusting a model. Every page's screenshot is kept under out/test-artifacts/ui/ (gitignored, a
CI artifact), whether its assertions passed or not, so a failure can be seen, not only read.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.core.project import TELEMETRY_OFF
from tests.conftest import ROOT, fresh_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Overridable so the skip path can be exercised on a machine that has Chromium
# (MPOPS_CHROMIUM=/nonexistent pytest tests/integration/test_ui.py).
CHROMIUM = Path(os.environ.get("MPOPS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("MPOPS_CHROMEDRIVER", "/usr/bin/chromedriver"))
SHOTS = ROOT / "out" / "test-artifacts" / "ui"
MODEL = "digits-classifier"
WAIT_S = 60
# The smallest model that still registers: 3 epochs reach only 0.875, under the gate's 0.9 accuracy
# floor (exit 4); 5 reach ~0.93. fp16 is left out (no CPU hardware path: slow, and the probe is off).
TINY = ["--precisions", "fp32,bf16", "--set", "train.hidden_size=64", "--set", "train.hidden_layers=1",
        "--set", "train.epochs=5", "--set", "train.batch_size=128", "--set", "probe.steps=0",
        "--set", "serving.check=false",
        "--set", "gate.latency_repeats=3"]
# Chromium's own background traffic (updates, sync, field trials, QUIC probes) is switched off and
# every host name but 127.0.0.1 made unresolvable: the test must pass offline and talk to nothing else.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--window-size=1600,1200"]


@pytest.fixture(scope="module")
def browser_binaries() -> tuple[Path, Path]:
    """Skip, before anything is trained, where the browser is missing (.ci/run installs it when it can)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromium-driver: {', '.join(missing)} missing "
                    "(apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is in the [test] extra: pip install -e '.[test]'")
    return CHROMIUM, CHROMEDRIVER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Store:
    """What the pipeline run left in the store, read back through the MLflow client."""

    def __init__(self, uri: str, artifacts: Path):
        from mlflow import MlflowClient

        client = MlflowClient(uri, uri)
        self.uri, self.artifacts = uri, artifacts
        self.experiment_id = client.get_experiment_by_name("mpops").experiment_id
        runs = client.search_runs([self.experiment_id])
        [self.parent] = [r for r in runs if r.info.run_name == "pipeline"]
        self.runs = len(runs)
        self.precisions = sorted(r.info.run_name for r in runs if r.info.run_name != "pipeline")
        self.version = client.get_model_version_by_alias(MODEL, "champion")
        self.plots = sorted(f.path for f in client.list_artifacts(self.parent.info.run_id, "plots")
                            if f.path.endswith(".png"))


@pytest.fixture(scope="module")
def store(browser_binaries, tmp_path_factory, request) -> Store:
    """One tiny `mpops run` in-process, into its own SQLite store and artifact folder."""
    import mlflow
    from mlflow import MlflowClient

    from flows.cli import main

    # Asked for here, not as arguments: pytest would start the session-scoped Prefect server before
    # the module-scoped browser check, and a machine without Chromium would wait ~15 s to skip.
    request.getfixturevalue("prefect_harness")
    digits_frame, session_store = request.getfixturevalue("digits_frame"), request.getfixturevalue("session_store")

    home = tmp_path_factory.mktemp("ui")
    uri, artifacts = fresh_store(home / "mlflow.db"), home / "artifacts"
    data = home / "digits.csv"
    digits_frame.to_csv(data, index=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        # The experiment is made here so its artifacts land in a folder the server can be pointed at
        # (with MLFLOW_TRACKING_URI set, mpops leaves the artifact location to MLflow's default, ./mlruns).
        MlflowClient(uri).create_experiment("mpops", artifact_location=artifacts.as_uri())
        try:
            code = 0  # main() returns on success and exits with its documented code otherwise
            try:
                main(["run", "--data", str(data), *TINY,
                      "--set", f"validation.report_dir={home / 'validation'}",
                      "--set", f"train.checkpoint_dir={home / 'checkpoints'}"])
            except SystemExit as e:
                code = e.code
            assert code in (0, None), f"mpops run exited {code}"
        finally:
            mlflow.set_tracking_uri(session_store)
            mlflow.set_registry_uri(session_store)
    return Store(uri, artifacts)


@pytest.fixture(scope="module")
def server(store, tmp_path_factory) -> str:
    """`mlflow server` over the filled store, on a free 127.0.0.1 port; its process group dies at teardown."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "mlflow-server.log"
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", store.uri, "--default-artifact-root", store.artifacts.as_uri(),
             "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # Telemetry off here too: the server also answers its UI's telemetry-config request.
            env={**TELEMETRY_OFF, **os.environ, "MLFLOW_TRACKING_URI": store.uri})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not come up on {base}: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def driver(browser_binaries, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_binaries
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # A fresh profile: nothing cached or remembered from an earlier run can make a page look right.
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    d = webdriver.Chrome(service=Service(executable_path=str(chromedriver)), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield d
    finally:
        d.quit()


def body_text(d) -> str:
    from selenium.webdriver.common.by import By

    return d.find_element(By.TAG_NAME, "body").text


def _transient():
    """What a React page throws at a script while it re-renders: retried by the waits, not failures."""
    from selenium.common.exceptions import (ElementClickInterceptedException, ElementNotInteractableException,
                                            NoSuchElementException, StaleElementReferenceException)

    return (NoSuchElementException, StaleElementReferenceException, ElementClickInterceptedException,
            ElementNotInteractableException)


def wait(d):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, WAIT_S, poll_frequency=0.5, ignored_exceptions=_transient())


def open_and_expect(d, url: str | None, needles: list[str], shot: str) -> str:
    """Open a page (None: stay), wait until every needle is in its visible text, screenshot it either way."""
    from selenium.common.exceptions import TimeoutException

    if url:
        d.get(url)
    try:
        wait(d).until(lambda d: all(n in body_text(d) for n in needles))
    except TimeoutException:
        text = body_text(d)
        pytest.fail(f"{url}: never showed {[n for n in needles if n not in text]}; page text:\n{text[:3000]}")
    finally:
        d.save_screenshot(str(SHOTS / shot))
    return body_text(d)


def png_width(path: Path) -> int:
    """The width in a PNG's IHDR header: what the browser's decoded <img> must report."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big")


def click(d, xpath: str) -> None:
    """Click the first match once it exists and takes the click (a re-render may replace it meanwhile)."""
    from selenium.webdriver.common.by import By

    def attempt(d) -> bool:
        d.find_element(By.XPATH, xpath).click()
        return True

    wait(d).until(attempt)


def click_text(d, text: str) -> None:
    click(d, f"//*[normalize-space(text())='{text}']")


def test_experiment_page_lists_the_pipeline_run_and_its_precisions(driver, server, store):
    open_and_expect(driver, f"{server}/#/experiments/{store.experiment_id}/runs",
                    ["mpops", "Training runs", "pipeline", f"{store.runs} matching runs"], "01-experiment-runs.png")
    # Child runs are folded under their parent: unfold `pipeline` as a reviewer would.
    click(driver, "//*[@role='gridcell'][.//*[normalize-space(text())='pipeline']]//button")
    children = [f"\n{p}\n" for p in store.precisions]  # whole lines: run names, not words inside other cells
    open_and_expect(driver, None, children, "01-experiment-runs-unfolded.png")


def test_parent_run_shows_the_gate_verdict_and_report(driver, server, store):
    tags = store.parent.data.tags
    selected = tags["gate.selected"]
    assert selected in ("fp32", "bf16")
    assert tags["mlflow.note.content"].startswith("# Gate report")
    # The description is the gate report's Markdown, rendered: its title shows without the '#'.
    open_and_expect(driver, f"{server}/#/experiments/{store.experiment_id}/runs/{store.parent.info.run_id}",
                    ["pipeline", "Gate report: candidates against fp32", f"Selected: {selected}",
                     f"gate.selected\n: {selected}", "validation.passed\n: true"], "02-parent-run.png")


def test_parent_run_plots_render_in_the_artifact_browser(driver, server, store):
    expected = {"plots/loss_per_precision.png", "plots/confusion_matrix.png", "plots/per_class_recall.png",
                "plots/reliability.png"}
    assert expected <= set(store.plots), store.plots
    assert "plots/loss_scale_fp16.png" not in store.plots  # fp16 did not train: no loss-scale trajectory
    run_id = store.parent.info.run_id
    open_and_expect(driver, f"{server}/#/experiments/{store.experiment_id}/runs/{run_id}/artifacts",
                    ["plots", "gate", "validation"], "03-artifacts.png")
    click_text(driver, "plots")
    from selenium.common.exceptions import TimeoutException

    seen: set[str] = set()
    for path in store.plots:
        name = path.split("/")[-1]
        width = png_width(store.artifacts / run_id / "artifacts" / path)
        click_text(driver, name)
        # A new, visible, decoded image of the PNG's own width: not the previous plot, not a broken icon.
        find = """return Array.from(document.images).filter(i => i.complete && i.naturalWidth === arguments[0]
                  && i.getClientRects().length > 0 && !arguments[1].includes(i.src)).map(i => i.src)"""
        try:
            srcs = wait(driver).until(
                lambda d: f"plots/{name}" in body_text(d) and driver.execute_script(find, width, list(seen)))
        except TimeoutException:
            pytest.fail(f"{path}: no rendered <img> {width} px wide; page text:\n{body_text(driver)[:2000]}")
        finally:
            driver.save_screenshot(str(SHOTS / f"04-plot-{name}"))
        seen.update(srcs)


def test_model_version_page_shows_precision_tags_and_gate_verdict(driver, server, store):
    tags = store.version.tags
    precision = tags["precision"]
    assert tags["gate.passed"] == "true" and precision in ("fp32", "bf16")
    # The tag table renders each tag as its name, then its value, on the next line.
    open_and_expect(driver, f"{server}/#/models/{MODEL}/versions/{store.version.version}",
                    [f"Version {store.version.version}", f"{precision} model selected by the mpops gate", "champion",
                     f"precision\n{precision}", f"precision.autocast_dtype\n{tags['precision.autocast_dtype']}",
                     f"precision.loss_scaling\n{tags['precision.loss_scaling']}", "gate.passed\ntrue",
                     "validation.passed\ntrue"],
                    "05-model-version.png")
