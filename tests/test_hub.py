"""``varscore models fetch`` end to end against a Hub server on 127.0.0.1 that serves a tiny
Enformer checkpoint in the Hub's URL layout (``/{repo}/resolve/{revision}/{filename}``, with the
metadata headers huggingface_hub reads: X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size,
Content-Length, and Range requests for resumed downloads)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_checkpoints import TINY_ENFORMER, _one_hot, enformer_reference, save_layout, source_enformer
from varscore import hub
from varscore.bundle import load_bundle
from varscore.errors import VarscoreError

REPO = "test-org/tiny-enformer"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class HubServer:
    """Files of one repository at one commit; ``corrupt`` names files whose bytes are altered after
    their checksum headers were computed (a download broken on the way)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.corrupt: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _resolve(self) -> tuple[str, bytes] | None:
                prefix = f"/{REPO}/resolve/"
                if not self.path.startswith(prefix):
                    return None
                revision, _, filename = self.path[len(prefix) :].partition("/")
                if revision not in (COMMIT, "main") or filename not in server.files:
                    return None
                return filename, server.files[filename]

            def _headers(self, filename: str, data: bytes, length: int, status: int) -> None:
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                if filename.endswith((".bin", ".safetensors")):  # stored in Git LFS: ETag = sha256
                    self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                else:
                    self.send_header("ETag", f'"{_git_blob_sha1(data)}"')
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")

            def do_HEAD(self) -> None:  # noqa: N802
                server.requests.append(("HEAD", self.path, self.headers.get("Range")))
                found = self._resolve()
                if found is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._headers(found[0], found[1], len(found[1]), 200)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(("GET", self.path, self.headers.get("Range")))
                found = self._resolve()
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                filename, data = found
                body = bytearray(data)
                if filename in server.corrupt:
                    body[len(body) // 2] ^= 0xFF
                start = 0
                requested = self.headers.get("Range")
                if requested and requested.startswith("bytes="):
                    start = int(requested[len("bytes=") :].split("-")[0])
                status = 206 if start else 200
                self._headers(filename, data, len(body) - start, status)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                self.wfile.write(bytes(body[start:]))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], np.ndarray, np.ndarray]:
    source = source_enformer(TINY_ENFORMER, seed=11)
    directory = save_layout(source, tmp_path_factory.mktemp("ckpt") / "tiny", "bin")
    x = _one_hot(2048, n=1)
    files = {name: (directory / name).read_bytes() for name in ("config.json", "pytorch_model.bin")}
    return files, x, enformer_reference(source, x)


@pytest.fixture
def server(checkpoint: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    running = HubServer(dict(checkpoint[0]))
    yield running
    running.close()


def _use_registry(monkeypatch: pytest.MonkeyPatch, sha: dict[str, str | None] | None = None) -> None:
    entry = {
        "format": "enformer",
        "replicates": [
            {"repo": REPO, "revision": COMMIT, "files": sha or {"config.json": None, "pytorch_model.bin": None}}
        ],
        "genome_build": "hg38",
        "window_size": 2048,
        "output": {"track": 1, "center_bins": 1},
        "licence": "CC-BY-4.0",
        "citation": "A tiny test model.",
    }
    monkeypatch.setattr(hub, "registry", lambda: {"tiny": entry, "needs-training": {"hint": "Train it: 'x'"}})


def _blobs(cache: Path) -> list[Path]:
    folder = cache / f"models--{REPO.replace('/', '--')}" / "blobs"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_fetch_verifies_imports_and_reuses_the_cache_offline(
    server: HubServer, checkpoint: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, x, expected = checkpoint
    _use_registry(monkeypatch)
    cache = tmp_path / "hub-cache"
    bundle_dir = hub.fetch_model("tiny", tmp_path / "tiny", endpoint=server.endpoint, cache_dir=cache)
    bundle = load_bundle(bundle_dir)
    np.testing.assert_allclose(bundle.sequence_backbone("cpu").predict(x), expected, rtol=1e-5, atol=1e-6)
    source = bundle.manifest["source"]["hub"][0]
    assert source["commit"] == COMMIT
    assert source["files"]["pytorch_model.bin"] == hashlib.sha256(files["pytorch_model.bin"]).hexdigest()
    assert bundle.manifest["licence"] == "CC-BY-4.0" and bundle.manifest["genome_build"] == "hg38"
    downloads = [r for r in server.requests if r[0] == "GET"]
    assert len(downloads) == 2

    # offline: from the cache, no request at all (and the server may as well be gone)
    server.requests.clear()
    server.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = hub.fetch_model("tiny", tmp_path / "again", endpoint=server.endpoint, cache_dir=cache)
    assert server.requests == []
    np.testing.assert_allclose(load_bundle(again).sequence_backbone("cpu").predict(x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(VarscoreError, match="HF_HUB_OFFLINE"):
        hub.fetch_model("tiny", tmp_path / "nope", cache_dir=tmp_path / "empty-cache")


def test_a_corrupted_download_is_refused_and_removed(
    server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_registry(monkeypatch)
    cache = tmp_path / "hub-cache"
    server.corrupt.add("pytorch_model.bin")
    with pytest.raises(VarscoreError, match="sha256 mismatch for pytorch_model.bin.*removed"):
        hub.fetch_model("tiny", tmp_path / "bad", endpoint=server.endpoint, cache_dir=cache)
    assert not (tmp_path / "bad").exists()
    size = len(server.files["pytorch_model.bin"])
    assert all(p.stat().st_size != size for p in _blobs(cache))  # the bad copy is gone
    server.corrupt.clear()  # a clean download then succeeds
    hub.fetch_model("tiny", tmp_path / "good", endpoint=server.endpoint, cache_dir=cache)
    assert (tmp_path / "good" / "weights.safetensors").is_file()


def test_registry_checksums_win_and_config_is_checked_by_git_blob_id(
    server: HubServer, checkpoint: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = checkpoint[0]
    _use_registry(monkeypatch, {"config.json": None, "pytorch_model.bin": "0" * 64})
    with pytest.raises(VarscoreError, match="the registry says 0000"):
        hub.fetch_model("tiny", tmp_path / "a", endpoint=server.endpoint, cache_dir=tmp_path / "c1")
    good = hashlib.sha256(files["pytorch_model.bin"]).hexdigest()
    _use_registry(
        monkeypatch, {"config.json": hashlib.sha256(files["config.json"]).hexdigest(), "pytorch_model.bin": good}
    )
    hub.fetch_model("tiny", tmp_path / "b", endpoint=server.endpoint, cache_dir=tmp_path / "c2")
    # a config.json changed on the server (its Git blob id with it) but altered on the way is caught
    server.files["config.json"] = files["config.json"].replace(b'"depth": 2', b'"depth": 2 ')
    server.corrupt.add("config.json")
    _use_registry(monkeypatch)
    with pytest.raises(VarscoreError, match="Git blob id"):
        hub.fetch_model("tiny", tmp_path / "d", endpoint=server.endpoint, cache_dir=tmp_path / "c3")


def test_an_interrupted_download_is_resumed(
    server: HubServer, checkpoint: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = checkpoint[0]
    _use_registry(monkeypatch)
    cache = tmp_path / "hub-cache"
    data = files["pytorch_model.bin"]
    blobs = cache / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    half = len(data) // 2
    (blobs / f"{hashlib.sha256(data).hexdigest()}.incomplete").write_bytes(data[:half])
    hub.fetch_model("tiny", tmp_path / "tiny", endpoint=server.endpoint, cache_dir=cache)
    ranges = [r[2] for r in server.requests if r[0] == "GET" and r[1].endswith("pytorch_model.bin")]
    assert ranges == [f"bytes={half}-"]


def test_cli_fetch_and_name_hints(server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from varscore.cli import cli

    _use_registry(monkeypatch)
    runner = CliRunner()
    out = tmp_path / "m"
    result = runner.invoke(
        cli,
        [
            "models",
            "fetch",
            "tiny",
            "-o",
            str(out),
            "--endpoint",
            server.endpoint,
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "varscore.json").is_file()
    result = runner.invoke(cli, ["models", "fetch", "needs-training"])
    assert result.exit_code != 0 and "Train it" in result.output
    result = runner.invoke(cli, ["models", "fetch", "unheard-of"])
    assert result.exit_code != 0 and "Known: needs-training, tiny" in result.output
    assert hub.model_hint("tiny") == "Download it with 'varscore models fetch tiny'"


def test_the_shipped_registry_is_well_formed() -> None:
    models = json.loads(hub.REGISTRY_FILE.read_text())["models"]
    assert {"enformer", "borzoi", "variformer-blood"} <= set(models)
    for name, entry in models.items():
        if not entry.get("replicates"):
            assert "finetune --recipe" in entry["hint"], name
            continue
        assert entry["format"] in ("enformer", "borzoi") and entry["genome_build"] == "hg38"
        assert entry["licence"] and entry["citation"]
        for replicate in entry["replicates"]:
            assert "/" in replicate["repo"] and replicate["revision"]
            assert "config.json" in replicate["files"]
            assert all(sha is None or len(sha) == 64 for sha in replicate["files"].values())
    assert len(models["borzoi"]["replicates"]) == 4
    assert hub.model_hint("enformer") == "Download it with 'varscore models fetch enformer'"


def test_names_resolve_to_fetched_models_or_say_how_to_get_them(
    server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from varscore.bundle import resolve_model
    from varscore.errors import ModelNotFoundError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("VARSCORE_MODELS", raising=False)
    for name, command in (
        ("enformer", "varscore models fetch enformer"),
        ("borzoi", "varscore models fetch borzoi"),
        ("variformer-blood", "varscore finetune --recipe variformer-blood"),
    ):
        with pytest.raises(ModelNotFoundError, match=command):
            resolve_model(name)
    _use_registry(monkeypatch)
    with pytest.raises(ModelNotFoundError, match="varscore models fetch tiny"):
        resolve_model("tiny")
    fetched = hub.fetch_model("tiny", endpoint=server.endpoint, cache_dir=tmp_path / "hub")
    assert resolve_model("tiny") == fetched == tmp_path / "xdg" / "varscore" / "models" / "tiny"


def test_fetch_writes_a_pretrained_dir_for_finetune(
    server: HubServer, checkpoint: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from varscore.cli import cli
    from varscore_plugins.enformer import EnformerBackbone

    _, x, expected = checkpoint
    _use_registry(monkeypatch)
    pretrained = tmp_path / "pre"
    result = CliRunner().invoke(
        cli,
        [
            "models",
            "fetch",
            "tiny",
            "-o",
            str(tmp_path / "m"),
            "--endpoint",
            server.endpoint,
            "--cache-dir",
            str(tmp_path / "c"),
            "--pretrained-dir",
            str(pretrained),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in pretrained.iterdir()) == ["config.json", "model.safetensors"]
    backbone = EnformerBackbone(head="pretrained", pretrained_dir=str(pretrained), window_size=2048).build()
    np.testing.assert_allclose(backbone.predict(x), expected, rtol=1e-5, atol=1e-6)
