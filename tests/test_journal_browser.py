"""The journal as a reader sees it: opened in headless Chromium (Debian's chromium) over the
DevTools protocol, and the PDF turned into pages and text with poppler's pdftoppm/pdftotext.

The page must load without console errors or requests to anywhere, every figure must have
rendered, a <script> planted in a model's answer must show as text and never run, and a
planted Hugging Face token must appear in no output.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_aggregate_tree import PLANTED_SCRIPT, aggregate, study_config, write_results_tree, write_sweeps

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PLANTED_TOKEN = "hf_PlantedTokenNeverShown0123456789abcd"
SCREENSHOT_COPY = os.environ.get("FTMATRIX_SCREENSHOT_DIR")   # keep the screenshot for a person to look at

pytestmark = pytest.mark.browser


# ---------------------------------------------------------------------------- a tiny DevTools client


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: masked text frames out, text frames in."""

    def __init__(self, url: str, timeout: float = 30.0):
        assert url.startswith("ws://")
        host_port, _, path = url[len("ws://"):].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            response += chunk
        head, _, self.buffer = response.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"DevTools refused the websocket: {head[:200]!r}")

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode in (0x9, 0xA):      # ping/pong: not used by DevTools, skip
                continue
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Browser:
    """Headless Chromium with a DevTools connection to one page; records console errors and requests."""

    def __init__(self, profile: Path):
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--window-size=1280,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.time() > deadline:
                self.quit()
                raise RuntimeError("chromium did not start its DevTools server")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/json/list")
        targets = json.loads(connection.getresponse().read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 60.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for message in self.events:
                if message.get("method") == event:
                    return message
            self.events.append(json.loads(self.ws.receive()))
        raise TimeoutError(event)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(json.dumps(params.get("args", []))[:300])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(params["entry"].get("text", "")[:300])
        return out

    def requests(self) -> list[str]:
        return [m["params"]["request"]["url"] for m in self.events if m.get("method") == "Network.requestWillBeSent"]

    def quit(self) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---------------------------------------------------------------------------- the journal under test


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    """The whole report chain (matrix, analysis, figures, journal, PDF) on a tree with hostile output."""
    from ftmatrix.analysis import analyse_matrix
    from ftmatrix.figures import draw_figures
    from ftmatrix.journal import build_journal, write_journal_pdf

    old = os.environ.get("HF_TOKEN")
    os.environ["HF_TOKEN"] = PLANTED_TOKEN
    try:
        root = tmp_path_factory.mktemp("journal")
        config = study_config(ranks=(4, 64))
        config["description"] = f"A study whose notes mention {PLANTED_TOKEN} by mistake."
        tree = write_results_tree(root, config, hostile=True, realistic=True)
        results = root / "results"
        matrix = aggregate(tree)
        analyse_matrix(matrix, tree.predictions, results / "analysis", resamples=300, seed=0, confidence=0.95)
        write_sweeps(tree, results / "analysis")
        draw_figures(matrix, results / "analysis", results / "figures")
        html = build_journal(matrix_file=matrix, analysis_dir=results / "analysis", figures_dir=results / "figures",
                             metrics_files=tree.metrics, predictions_files=tree.predictions,
                             task_meta_files=tree.task_meta, model_manifests=tree.manifests,
                             train_metrics_files=tree.train_metrics, config=config,
                             html_file=results / "journal" / "journal.html", config_hash="0f0f0f0f0f0f0f0f")
        pdf = write_journal_pdf(html, results / "journal" / "journal.pdf")
    finally:
        if old is None:
            os.environ.pop("HF_TOKEN", None)
        else:
            os.environ["HF_TOKEN"] = old
    return {"root": root, "results": results, "html": html, "pdf": pdf}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_journal_in_headless_chromium(journal, tmp_path):
    browser = Browser(tmp_path / "profile")
    try:
        browser.call("Page.navigate", url=journal["html"].as_uri())
        browser.wait_for("Page.loadEventFired")
        page = browser.evaluate("""JSON.stringify({
            images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
            scripts: document.scripts.length,
            pwned: window.__pwned === undefined ? null : window.__pwned,
            title: document.title,
            headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
            text: document.body.innerText,
        })""")
        shot = browser.call("Page.captureScreenshot", format="png")
        # In a window half a laptop screen wide, TL;DR lines wider than their box: text that runs
        # off the page instead of wrapping.
        browser.call("Emulation.setDeviceMetricsOverride", width=800, height=1000, deviceScaleFactor=1, mobile=False)
        narrow = json.loads(browser.evaluate("""JSON.stringify({
            highlights: document.querySelectorAll('ul.highlights li').length,
            overflowing: Array.from(document.querySelectorAll('ul.highlights li'))
                .filter(li => li.scrollWidth > li.clientWidth + 1).map(li => li.innerText.slice(0, 120)),
        })"""))
    finally:
        browser.quit()
    page = json.loads(page)
    assert browser.errors() == []
    assert all(url.startswith(("file:", "data:")) for url in browser.requests()), browser.requests()
    # Every figure drawn (the sweep's included) is on the page and loaded.
    figures = sorted((journal["results"] / "figures").glob("*.png"))
    assert len(figures) >= 6 and len(page["images"]) == len(figures)
    assert all(complete and width > 0 and height > 0 for complete, width, height in page["images"]), page["images"]
    # The planted script is text on the page, never code.
    assert page["scripts"] == 0 and page["pwned"] is None and "PWNED" not in page["title"]
    assert PLANTED_SCRIPT.split(">")[0] + ">" in page["text"]
    assert page["headings"][:3] == ["TL;DR", "Setup", "Results"]
    # Every TL;DR line wraps within the page (a long interval wraps too).
    assert narrow["highlights"] > 5 and narrow["overflowing"] == [], narrow["overflowing"]
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    (tmp_path / "journal.png").write_bytes(png)
    if SCREENSHOT_COPY:
        Path(SCREENSHOT_COPY).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOT_COPY) / "journal-chromium.png").write_bytes(png)


@pytest.mark.skipif(not (shutil.which("pdftoppm") and shutil.which("pdftotext")),
                    reason="poppler-utils is not installed (apt-get install poppler-utils)")
def test_journal_pdf_pages_and_text(journal, tmp_path):
    from ftmatrix.journal import SECTIONS

    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "2", str(journal["pdf"]), str(tmp_path / "page")],
                   check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2 and all(p.stat().st_size > 10_000 for p in pages)
    if SCREENSHOT_COPY:
        shutil.copy(pages[0], Path(SCREENSHOT_COPY) / "journal-pdf-page1.png")
    text = subprocess.run(["pdftotext", "-layout", str(journal["pdf"]), "-"], capture_output=True, text=True,
                          check=True, timeout=120).stdout
    for title in SECTIONS:
        assert title in text, title
    assert "<script>document.title" in text          # shown as text in the PDF too
    info = subprocess.run(["pdfinfo", str(journal["pdf"])], capture_output=True, text=True, timeout=60).stdout
    assert int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:"))) >= 5


def test_planted_token_appears_in_no_output(journal):
    for path in journal["results"].rglob("*"):
        if path.is_file():
            assert PLANTED_TOKEN.encode() not in path.read_bytes(), path
    text = subprocess.run(["pdftotext", str(journal["pdf"]), "-"], capture_output=True, text=True).stdout \
        if shutil.which("pdftotext") else ""
    assert PLANTED_TOKEN not in text
    assert "hf_***" in journal["html"].read_text(encoding="utf-8")
