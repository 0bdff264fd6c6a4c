"""Headless Chromium driven over the DevTools protocol: load a page offline, wait for its
scripts, read values out of it, move the mouse, collect console errors, take a screenshot.

``--dump-dom`` can only read a page once; the dashboard test also needs a real hover (a mouse
event the page reacts to) and the console's errors, which only the protocol gives.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from support.browser import chromium
from support.net import wait_until

# Offline: no name resolves, so any asset from elsewhere would fail to load (and be an error).
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


class Page:
    """One tab of a headless Chromium of its own (``with Page(tmp) as page: …``)."""

    def __init__(self, profile: Path, width: int = 1300, height: int = 1900) -> None:
        self.profile, self.width, self.height = profile, width, height
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None
        self._session = ""
        self._stack = ExitStack()

    def __enter__(self) -> Page:
        self.profile.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", OFFLINE, "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        wait_until(lambda: port_file.exists() and len(port_file.read_text().split()) == 2,
                   timeout=60, interval=0.1, what="Chromium's DevTools port")
        port, path = port_file.read_text().split()
        self._ws = self._stack.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30))
        target = self.call("Target.createTarget", url="about:blank", browser=True)["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True,
                                  browser=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.resize(self.height)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stack.close()
        finally:
            if self._proc is not None:
                self._proc.kill()
                self._proc.wait(timeout=30)

    # --- the protocol ---------------------------------------------------------------------
    def call(self, method: str, browser: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command (to the page's session unless ``browser``) and return its result;
        events that arrive meanwhile are kept in ``events``."""
        assert self._ws is not None
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if not browser:
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=120))
            if reply.get("id") != ident:
                if "method" in reply:
                    self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    # --- what a test does -----------------------------------------------------------------
    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def before_scripts(self, source: str) -> None:
        """Run ``source`` in every page loaded from now on, before the page's own scripts."""
        self.call("Page.addScriptToEvaluateOnNewDocument", source=source)

    def wait_for(self, expression: str, timeout: float = 90, what: str = "") -> Any:
        """Poll ``expression`` until it is truthy (one that throws, e.g. while the page is
        still loading, counts as not yet); its value."""
        def value() -> Any:
            try:
                return self.evaluate(expression)
            except RuntimeError:
                return None

        return wait_until(value, timeout=timeout, interval=0.25, what=what or expression)

    def hover(self, x: float, y: float) -> None:
        """Move the mouse to (x, y) of the viewport, as a user's pointer would."""
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)

    def resize(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def screenshot(self, path: Path) -> None:
        """The whole page (the viewport grown to the page's height) as a PNG."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.resize(max(self.height, height))
        self.evaluate("new Promise((done) => requestAnimationFrame(() => "
                      "requestAnimationFrame(done)))")  # let the charts relayout
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        self.resize(self.height)

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and error-level log entries (a resource
        that failed to load) seen so far."""
        out = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append(details.get("exception", {}).get("description")
                           or details.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                                 "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", "")))
                                    for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                out.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
        return out
