"""The wheel, installed into a fresh virtual environment, is a working service.

The wheel is built from a copy of the source tree (offline: ``--no-build-isolation
--no-index``), installed with ``--no-deps`` into a new venv whose dependencies come from this
environment's site-packages by a plain path line in a ``.pth`` file (plain lines do not run the
editable install's import hooks, so ``hashstream`` is the installed copy, not this checkout).
Then ``<venv>/bin/hashstream serve`` (embedded Redis) must serve the dashboard, Swagger UI from
local assets (rendered by headless Chromium), and report its compiled Hamming kernel.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import types
import zipfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.browser import chromium

ROOT = Path(__file__).resolve().parents[2]
# What a wheel build needs from the tree; build outputs and in-place .so files stay behind.
SOURCES = ["pyproject.toml", "README.md", "hashstream"]
LOOPBACK = re.compile(r"https?://(127\.0\.0\.1|localhost)[:/]")


def _has_c_compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


def _run(args: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                         **kwargs)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    major, minor = (int(p) for p in version("setuptools").split(".")[:2])
    assert (major, minor) >= (74, 1), "the build needs setuptools>=74.1 in this environment"
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(work / "dist"), str(src)], timeout=600)
    wheels = list((work / "dist").glob("hashstream-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel; returns its python."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], timeout=120)
    python = root / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], timeout=300)
    fresh_site = Path(_run([str(python), "-c", "import sysconfig; "
                            "print(sysconfig.get_paths()['purelib'])"], timeout=60)
                      .stdout.strip())
    # This environment's site-packages, and any PYTHONPATH folder outside the checkout (a
    # `pip install --target` of a dependency, say).
    extra = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    ours = [p for p in dict.fromkeys([*site.getsitepackages(), *extra])
            if p and Path(p).is_dir() and not (Path(p) / "hashstream" / "__init__.py").exists()]
    (fresh_site / "_hashstream_test_deps.pth").write_text("".join(f"{p}\n" for p in ours))
    return python


def _clean_env() -> dict[str, str]:
    """Our environment minus anything that would point the child at this checkout or our
    Redis/settings."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("HASHSTREAM_", "PYTHON")) and k != "REDIS_URL"}


@pytest.fixture(scope="module")
def served(venv: Path, hs: Any, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[types.SimpleNamespace]:
    """`<venv>/bin/hashstream serve` with its embedded Redis, API only (no worker)."""
    cwd = tmp_path_factory.mktemp("served")
    port = hs.free_port()
    env = _clean_env()
    env["PYTHONUNBUFFERED"] = "1"
    proc = hs.Proc([str(venv.parent / "hashstream"), "serve", "--host", "127.0.0.1",
                    "--port", str(port), "--workers", "0", "--data-dir", str(cwd / "data")],
                   env, cwd)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        def up() -> bool:
            if not proc.alive():
                raise AssertionError("serve exited:\n" + proc.log.text()[-4000:])
            try:
                return http.get("/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        hs.wait_until(up, timeout=120, interval=0.2, what="/healthz of the installed service")
        yield types.SimpleNamespace(url=f"http://127.0.0.1:{port}", http=http, proc=proc,
                                    cwd=cwd)
    finally:
        http.close()
        proc.stop()


def test_wheel_holds_static_files_and_compiled_kernel(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for static in ("dashboard.html", "dashboard.js", "dashboard.css"):
        assert f"hashstream/api/static/{static}" in names, names
    kernels = [n for n in names if re.fullmatch(r"hashstream/hamming/_hamming[^/]*\.so", n)]
    if _has_c_compiler():
        assert kernels, f"no compiled Hamming kernel in the wheel: {names}"


def test_fresh_venv_imports_the_installed_copy(venv: Path, tmp_path: Path) -> None:
    out = _run([str(venv), "-c", "import hashstream, fastapi_offline; "
                "print(hashstream.__file__)"], timeout=120, env=_clean_env(), cwd=tmp_path)
    where = Path(out.stdout.strip()).resolve()
    assert where.is_relative_to(venv.parent.parent.resolve()), where
    assert not where.is_relative_to(ROOT), where


def test_installed_service_serves_dashboard_docs_and_kernel(served: Any) -> None:
    http = served.http
    page = http.get("/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "dashboard.js" in page.text
    assert http.get("/dashboard/static/dashboard.js").status_code == 200
    plotly = http.get("/dashboard/vendor/plotly.min.js")  # from the installed plotly package
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000

    docs = http.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    external = [u for u in re.findall(r"""https?://[^\s"'<>)]+""", docs.text)
                if not LOOPBACK.match(u)]
    assert not external, f"/docs references external URLs: {external}"
    assert "/docs/assets/swagger-ui-bundle.js" in docs.text
    js = http.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    css = http.get("/docs/assets/swagger-ui.css")
    assert css.status_code == 200
    assert not re.search(r"""@import|url\(\s*["']?(https?:)?//""", css.text), "remote CSS asset"
    assert http.get("/docs/assets/favicon.png").status_code == 200
    assert http.get("/redoc").status_code == 404
    assert "/indexes" in http.get("/openapi.json").json()["paths"]

    kernel = http.get("/healthz").json()["hamming_kernel"]
    if _has_c_compiler():
        assert kernel in ("avx512", "avx2", "popcnt", "scalar"), kernel
    else:
        assert kernel == "numpy", kernel


def test_docs_render_offline_in_chromium(served: Any, tmp_path: Path) -> None:
    browser = chromium()
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1300,1900", "--virtual-time-budget=10000",
            # Offline: no name resolves, so any asset from elsewhere would fail to load.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--dump-dom", f"{served.url}/docs"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    assert "opblock" in dom, dom[-3000:]
    assert re.search(r'data-path="/indexes"', dom), "the /indexes operations were not rendered"
    assert "Failed to load API definition" not in dom
    assert len(re.findall(r'class="opblock opblock-', dom)) >= 10, "too few operations drawn"
