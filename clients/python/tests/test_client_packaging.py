"""`pip install ./clients/python` into a fresh virtualenv (PyPI for httpx and the build backend),
then the installed package and its `conveyor` script work against the live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import conveyor_client

PACKAGE = Path(__file__).resolve().parents[1]


def test_pip_install_in_a_fresh_venv(tmp_path: Path, conveyor_server) -> None:
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(PACKAGE)],
        check=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import json, pathlib, conveyor_client as c; "
            "print(json.dumps([c.__version__, c.API_VERSION, c.__file__, "
            "(pathlib.Path(c.__file__).parent / 'py.typed').exists()]))",
        ],
        check=True,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    version, api_version, location, typed = json.loads(probe.stdout)
    assert version == conveyor_client.__version__
    assert version.split(".")[0] == api_version.removeprefix("v")  # 1.x speaks /api/v1
    assert str(target) in location  # the installed copy, not the source tree
    assert typed
    types = subprocess.run(
        [str(target / "bin" / "conveyor"), "--json", "types"],
        env={
            **env,
            "CONVEYOR_URL": conveyor_server.url,
            "CONVEYOR_API_KEY": conveyor_server.tenant.api_key,
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert types.returncode == 0, types.stderr
    assert "diagnostics.echo" in {t["name"] for t in json.loads(types.stdout)}
    assert sys.version_info >= (3, 11)
