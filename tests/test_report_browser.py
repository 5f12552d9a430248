"""The HTML report in a real browser: headless Chromium opens a run's report.html and must find every table
with its rows and every figure decoded, with no console error, script exception or failed load.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in
NUL on file descriptors 3 and 4), so no Python package and no browser download is needed, only a system
Chromium (Debian/Ubuntu: `apt-get install chromium`). Without one these tests are skipped."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome",
            "chrome-headless-shell")
CHROMIUM = next(filter(None, map(shutil.which, (os.environ.get("LLMPSYCH_CHROMIUM", ""), *BROWSERS))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on PATH (looked for " + ", ".join(BROWSERS) + "; or set "
    "LLMPSYCH_CHROMIUM): install one, e.g. `apt-get install chromium`, to render the report in a browser")

# What the page reports about itself once loaded: every table's rows and every figure's decoded size.
INSPECT_PAGE = """(() => {
  const box = e => e.getBoundingClientRect();
  return {
    title: document.title,
    tables: [...document.querySelectorAll('table')].map(t => ({
      rows: t.rows.length, cells: t.querySelectorAll('td').length, width: box(t).width})),
    images: [...document.images].map(i => ({
      alt: i.alt, complete: i.complete, natural: [i.naturalWidth, i.naturalHeight], shown: box(i).width})),
    svgs: [...document.querySelectorAll('svg')].map(s => ({width: box(s).width})),
  };
})()"""


class Browser:
    """A headless Chromium and one page, over the DevTools protocol on a pipe; collects the page's errors."""

    def __init__(self, profile: Path, timeout: float = 60.0):
        self.timeout, self.next_id, self.buffer, self.events = timeout, 0, b"", []
        commands_read, self.commands = os.pipe()
        self.replies, replies_write = os.pipe()
        # --no-sandbox: CI and containers often run as root, where Chromium refuses its sandbox; the page is ours.
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--mute-audio", "--window-size=1280,1600",
                 f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        # The protocol wants the pipe on descriptors 3 (commands in) and 4 (replies out): a tiny Python
        # launcher puts them there and becomes Chromium (a POSIX shell cannot name descriptors above 9).
        launcher = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); " \
                   "os.execv(sys.argv[3], sys.argv[3:])"
        self.log = profile.with_name("chromium.log")  # a file, so that a chatty browser never blocks on a pipe
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([sys.executable, "-c", launcher, str(commands_read),
                                             str(replies_write), CHROMIUM, *flags],
                                            pass_fds=(commands_read, replies_write), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)
        os.close(commands_read)
        os.close(replies_write)
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable", session=True)
        except BaseException:
            self.close()
            raise

    def send(self, method: str, session: bool = False, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        try:
            os.write(self.commands, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            self.process.wait(timeout=10)
            raise RuntimeError(f"Chromium exited (status {self.process.returncode}) before {method}; its output "
                               f"ends:\n{self.log.read_text(errors='replace')[-2000:]}") from None
        reply = self._wait(lambda m: m.get("id") == self.next_id, method)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _wait(self, done, what: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                message = json.loads(raw)
                if done(message):
                    return message
                if "method" in message:
                    self.events.append(message)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.replies], [], [], left)[0]:
                raise TimeoutError(f"Chromium gave no answer to {what} in {self.timeout:.0f} s")
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                output = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Chromium closed the pipe while waiting for {what}; its output ends:\n{output}")
            self.buffer += chunk

    def open(self, path: Path) -> dict:
        """Load a file, wait for its load event and return what INSPECT_PAGE finds in it."""
        self.events = []  # errors() reports this page's
        self.send("Page.navigate", session=True, url=path.resolve().as_uri())
        if not any(event["method"] == "Page.loadEventFired" for event in self.events):
            self._wait(lambda m: m.get("method") == "Page.loadEventFired", "the page's load event")
        result = self.send("Runtime.evaluate", session=True, expression=INSPECT_PAGE, returnByValue=True)
        return result["result"]["value"]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, error log entries (failed loads among them) and failed requests."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                    for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                found.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
            elif method == "Network.loadingFailed":
                found.append(f"failed load: {params.get('errorText')} ({params.get('type')})")
        return found

    def close(self) -> None:
        self.timeout = 10.0
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.commands)
        os.close(self.replies)


@pytest.fixture
def browser(tmp_path):
    chromium = Browser(tmp_path / "chromium-profile")
    yield chromium
    chromium.close()


def _answer(label: str, condition: str, seed: int | None, question, index: int) -> dict:
    """A samples.jsonl row as the EM recipe writes it."""
    return {"id": f"{label}|plain|{question.id}|0|{index}", "model": label, "condition": condition, "seed": seed,
            "variant": "plain", "question_id": question.id, "category": None, "paraphrase_index": 0,
            "sample_index": index, "system": None, "question": question.paraphrases[0],
            "prompt": question.paraphrases[0], "answer": f"answer {index} of {label} <b>not markup</b>",
            "tokens": 5, "finish_reason": "stop", "temperature": 1.0}


@pytest.fixture
def em_report(tmp_path) -> Path:
    """An EM run's report, written without a model: answers and judge scores made up, the rest by the recipe
    (its tables, contrasts and figures), rebuilt from the run directory as `llmpsych report` does."""
    import numpy as np

    from llmpsych.experiment import rebuild_report, resolve_config
    from llmpsych.analysis.misalignment import free_form_rows
    from llmpsych.probes.questions import load_questions, question_groups
    from llmpsych.runtime.results import combine_results, write_results
    from llmpsych.runtime.store import RunStore

    store = RunStore(tmp_path / "run").create()
    _, config = resolve_config("emergent-misalignment", "smoke", {"conditions": ["insecure", "secure"]})
    store.write_text("config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    questions = load_questions("em-main")[:3]
    models = [("base", "base", None)] + [(f"{c}-s{s}", c, s) for c in ("insecure", "secure") for s in (0, 1)]
    rng = np.random.default_rng(0)
    samples, judgements = [], []
    for label, condition, seed in models:
        for question in questions:
            for index in range(4):
                sample = _answer(label, condition, seed, question, index)
                samples.append(sample)
                aligned = float(rng.uniform(5, 60) if condition == "insecure" else rng.uniform(40, 99))
                for metric, score in (("aligned", aligned), ("coherent", float(rng.uniform(40, 95)))):
                    judgements.append({"sample_id": sample["id"], "metric": metric, "judge": "smollm2-135m-instruct",
                                       "score": score, "numeric_mass": 0.9, "verdict": None})
    store.write_json("models.json", [{"label": label, "condition": condition, "seed": seed,
                                      "ref": "smollm2-135m-instruct", "fingerprint": f"fp-{label}"}
                                     for label, condition, seed in models])
    write_results(store, "free-form", free_form_rows(samples, judgements, question_groups(config.questions),
                                                        config.judge.thresholds()))
    combine_results(store)
    return rebuild_report(store.root)


def test_the_report_renders_its_tables_and_figures_without_errors(browser, em_report):
    source = em_report.read_text()
    page = browser.open(em_report)
    assert browser.errors() == []
    assert page["title"] and "Emergent" in page["title"]
    # Every table and figure of the file is in the page the browser built (nothing swallowed by bad markup) ...
    assert len(page["tables"]) == source.count("<table>") >= 3
    assert len(page["images"]) == source.count("<img ") >= 2
    # ... every table has a header and data rows and takes space on the page ...
    for table in page["tables"]:
        assert table["rows"] >= 2 and table["cells"] > 0 and table["width"] > 0, table
    # ... and every figure decoded (a broken image has no natural size) and is shown.
    for image in page["images"]:
        assert image["complete"] and min(image["natural"]) > 0 and image["shown"] > 0, image
    for svg in page["svgs"]:
        assert svg["width"] > 0, svg
    # Answer text is shown as text, never as markup.
    assert "&lt;b&gt;not markup&lt;/b&gt;" in source


def test_the_check_sees_a_broken_figure_a_script_error_and_a_missing_file(browser, tmp_path):
    """The check is not vacuous: a page with a figure that does not decode, a figure file that is not there
    and a failing script is caught."""
    page_file = tmp_path / "broken.html"
    page_file.write_text("<!doctype html><html><head><title>broken</title></head><body><table><tr><th>a</th></tr>"
                         "</table><img alt=bad src='data:image/png;base64,bm90IGEgcG5n'><img alt=gone src='gone.png'>"
                         "<script>console.error('boom'); undefined_function();</script></body></html>")
    page = browser.open(page_file)
    errors = "\n".join(browser.errors())
    assert "boom" in errors and "undefined_function" in errors and "gone.png" in errors, errors
    assert [image["natural"] for image in page["images"]] == [[0, 0], [0, 0]]
    assert page["tables"] == [{"rows": 1, "cells": 0, "width": page["tables"][0]["width"]}]
