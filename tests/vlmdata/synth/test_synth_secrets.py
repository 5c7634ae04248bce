"""No key reaches disk or the terminal: not one written into `endpoint.base_url`, not the value of an
`api_key_env` variable whose name does not look secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import FakeOpenAI
from synth_kit import CONV, files_containing, job, llava_recipe
from vlmdata_kit import Workspace

from vlmdata.redact import safe_url

URL_KEY = "sk-URLSECRET-4f9a1c2e7d"
ENV_KEY = "plain-value-7c1e9b3a5f"  # in a variable whose name says nothing about secrets


def test_safe_url_masks_every_kind_of_credential() -> None:
    assert safe_url("https://api.openai.com/v1") == "https://api.openai.com/v1"
    for url in (f"https://user:{URL_KEY}@host/v1", f"https://{URL_KEY}@host/v1", f"https://host/v1?api-key={URL_KEY}",
                f"https://host/{URL_KEY}/v1", f"https://host/v1?token={URL_KEY}&x=1"):
        shown = safe_url(url)
        assert URL_KEY not in shown and "***" in shown and "host" in shown, shown


def test_keys_in_base_url_and_in_any_api_key_env_stay_out(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeOpenAI(api_key=None).start()  # basic auth from the URL's userinfo is fine with it
    server.rule = lambda text, attempt: __import__("openai_server").Reply(text=CONV)
    try:
        monkeypatch.setenv("VLM_ENDPOINT_CFG", ENV_KEY)
        port = server.base_url.split(":")[2].split("/")[0]
        url = f"http://someone:{URL_KEY}@127.0.0.1:{port}/v1"
        spec = job("conversation", "llava/conversation", endpoint={"base_url": url, "api_key_env": "VLM_ENDPOINT_CFG"})
        recipe = llava_recipe(ws, n=2, jobs=[spec], description="key is ${VLM_ENDPOINT_CFG}")
        built = ws.build(recipe)
        assert len([r for r in built.rows if r["task"] == "conversation"]) == 2
        roots = [ws.root / "out", ws.root / ".vlmdata-cache"]
        assert files_containing(roots, URL_KEY) == [] and files_containing(roots, ENV_KEY) == []
        shown = built.manifest["recipe"]
        assert shown["synthesize"][0]["endpoint"]["base_url"] == "http://***:***@127.0.0.1:" + port + "/v1"
        assert shown["description"] == "key is ${VLM_ENDPOINT_CFG}"
    finally:
        server.stop()


def test_an_unreachable_endpoint_message_holds_no_key(ws: Workspace) -> None:
    spec = job("conversation", "llava/conversation", max_retries=0,
               endpoint={"base_url": f"http://u:{URL_KEY}@127.0.0.1:9/v1?api-key={URL_KEY}",
                         "api_key_env": "VLM_ENDPOINT_CFG"})
    recipe = ws.recipe(llava_recipe(ws, n=1, jobs=[spec]))
    env = {**os.environ, "VLM_ENDPOINT_CFG": ENV_KEY}
    said = {}
    for command in (["build", str(recipe), "-q", "-o", str(ws.root / "out")], ["plan", str(recipe)],
                    ["validate", str(recipe)]):
        done = subprocess.run([sys.executable, "-m", "vlmdata.cli", *command], env=env, capture_output=True,
                              text=True, timeout=120)
        text = done.stdout + done.stderr
        assert URL_KEY not in text and ENV_KEY not in text, text
        said[command[0]] = (done.returncode, text)
    assert said["build"][0] != 0 and "cannot reach http://u:***@127.0.0.1:9/v1?api-key=***" in said["build"][1]
    assert said["validate"][0] == 0
    assert not Path(ws.root / "out").exists() or files_containing([ws.root / "out"], URL_KEY) == []
