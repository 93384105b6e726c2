"""``varscore models fetch`` end to end against a Hub server on 127.0.0.1 that serves a tiny
Enformer checkpoint in the Hub's URL layout (``/{repo}/resolve/{revision}/{filename}``, with the
metadata headers the download guard reads: X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size,
Content-Length, and Range requests for resumed downloads), and against hostile variants of it
(names with ``../``, huge or missing sizes, endless bodies, stalls, redirects) that the guard in
:mod:`varscore.io.download` must refuse without touching anything outside the cache."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.models.test_checkpoints import TINY_ENFORMER, _one_hot, enformer_reference, save_layout, source_enformer
from varscore.errors import InputError, VarscoreError
from varscore.io import download
from varscore.models import hub
from varscore.models.bundle import load_bundle

REPO = "test-org/tiny-enformer"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class HubServer:
    """Files of one repository at one commit; ``corrupt`` names files whose bytes are altered after
    their checksum headers were computed (a download broken on the way). Hostile behaviour:
    ``headers`` overrides response headers (None: leave it out), ``endless`` streams a body that
    never ends, ``stall`` holds a GET after its headers until ``release`` is set (at close),
    ``redirect`` answers with a 302 to that prefix + the path. ``auth`` records every request's
    Authorization header."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.corrupt: set[str] = set()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.auth: list[tuple[str, str, str | None]] = []  # (method, path, Authorization header)
        self.headers: dict[str, str | None] = {}
        self.endless = False
        self.stall = False
        self.release = threading.Event()
        self.redirect: str | None = None
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
                headers: dict[str, str | None] = {"X-Repo-Commit": COMMIT}
                if filename.endswith((".bin", ".safetensors")):  # stored in Git LFS: ETag = sha256
                    headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                    headers["X-Linked-Size"] = str(len(data))
                    headers["ETag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                else:
                    headers["ETag"] = f'"{_git_blob_sha1(data)}"'
                headers["Content-Length"] = str(length)
                headers["Accept-Ranges"] = "bytes"
                for key, value in {**headers, **server.headers}.items():
                    if value is not None:
                        self.send_header(key, value)

            def _redirected(self, filename: str, data: bytes) -> bool:
                if server.redirect is None:
                    return False
                self._headers(filename, data, 0, 302)
                self.send_header("Location", server.redirect + self.path)
                self.end_headers()
                return True

            def _record(self, method: str) -> None:
                server.requests.append((method, self.path, self.headers.get("Range")))
                server.auth.append((method, self.path, self.headers.get("Authorization")))

            def _endless(self) -> None:
                chunk = b"x" * 65536
                try:
                    for _ in range(4096):  # 256 MiB at most, should the client never stop
                        if server.release.is_set():
                            return
                        self.wfile.write(chunk)
                except OSError:  # the client hung up
                    pass

            def do_HEAD(self) -> None:  # noqa: N802
                self._record("HEAD")
                found = self._resolve()
                if found is not None and self._redirected(*found):
                    return
                if found is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._headers(found[0], found[1], len(found[1]), 200)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self._record("GET")
                found = self._resolve()
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                filename, data = found
                if self._redirected(filename, data):
                    return
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
                if server.stall:
                    server.release.wait(30)
                elif server.endless:
                    self._endless()
                else:
                    self.wfile.write(bytes(body[start:]))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.release.set()
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


def _use_registry(monkeypatch: pytest.MonkeyPatch, sha: dict[str, Any] | None = None) -> None:
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


def test_a_window_of_zero_is_refused_not_replaced_by_the_registry_window(
    server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_registry(monkeypatch)
    with pytest.raises(VarscoreError, match="window"):
        hub.fetch_model("tiny", tmp_path / "m", endpoint=server.endpoint, cache_dir=tmp_path / "c", window_size=0)
    assert not (tmp_path / "m").exists()


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
            for filename, spec in replicate["files"].items():
                sha, size = hub.file_spec(replicate["repo"], filename, spec)
                assert (sha is None or len(sha) == 64) and (size is None or size > 0)
    assert len(models["borzoi"]["replicates"]) == 4
    assert hub.model_hint("enformer") == "Download it with 'varscore models fetch enformer'"


def test_names_resolve_to_fetched_models_or_say_how_to_get_them(
    server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from varscore.errors import ModelNotFoundError
    from varscore.models.bundle import resolve_model

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


# ---------------------------------------------------------------- the download guard against hostile servers

BIN = "pytorch_model.bin"


def _outside(tmp_path: Path, cache: Path) -> dict[str, bytes | None]:
    """Everything below ``tmp_path`` except the cache: path -> content (None for folders)."""
    found: dict[str, bytes | None] = {}
    for path in tmp_path.rglob("*"):
        if not path.is_relative_to(cache):
            found[str(path)] = path.read_bytes() if path.is_file() else None
    return found


def _refused(excinfo: pytest.ExceptionInfo[hub.DownloadError]) -> str:
    message = str(excinfo.value)
    assert type(excinfo.value) is hub.DownloadError and "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("header", ["X-Linked-Etag", "ETag"])
def test_an_etag_with_dot_dot_is_refused_before_anything_is_written(
    server: HubServer, tmp_path: Path, header: str
) -> None:
    cache = tmp_path / "hub-cache"
    victim = tmp_path / "victim"  # blobs/../../../victim
    victim.write_bytes(b"precious")
    server.headers = {"X-Linked-Etag": None, "ETag": None, header: '"../../../victim"'}
    before = _outside(tmp_path, cache)
    with pytest.raises(hub.DownloadError) as excinfo:
        hub.fetch_file(REPO, BIN, COMMIT, None, endpoint=server.endpoint, cache_dir=cache)
    assert "ETag that is not a checksum ('\"../../../victim\"')" in _refused(excinfo)
    assert victim.read_bytes() == b"precious" and _outside(tmp_path, cache) == before
    assert not cache.exists() and [r[0] for r in server.requests] == ["HEAD"]


def test_a_commit_with_dot_dot_is_a_one_line_refusal(server: HubServer, tmp_path: Path) -> None:
    cache = tmp_path / "hub-cache"
    server.headers = {"X-Repo-Commit": "../../../outside"}
    before = _outside(tmp_path, cache)
    with pytest.raises(hub.DownloadError) as excinfo:
        hub.fetch_file(REPO, BIN, "main", None, endpoint=server.endpoint, cache_dir=cache)
    assert "X-Repo-Commit that is not a commit id ('../../../outside')" in _refused(excinfo)
    assert _outside(tmp_path, cache) == before and not cache.exists()


@pytest.mark.parametrize("planted", ["snapshot", "blob"])
def test_a_failed_check_never_removes_a_file_outside_the_cache(
    server: HubServer, checkpoint: Any, tmp_path: Path, planted: str
) -> None:
    """A link planted in the cache leads to a file outside it; the file fails its checksum, and the
    guard refuses instead of removing what the link points to (the old clean-up unlinked it)."""
    cache = tmp_path / "hub-cache"
    folder = cache / f"models--{REPO.replace('/', '--')}"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    sha = hashlib.sha256(checkpoint[0][BIN]).hexdigest()
    if planted == "snapshot":  # offline: snapshots/<commit>/file -> outside
        link = folder / "snapshots" / COMMIT / BIN
    else:  # online: blobs/<etag> -> outside
        link = folder / "blobs" / sha
    link.parent.mkdir(parents=True)
    link.symlink_to(victim)
    with pytest.raises(hub.DownloadError) as excinfo:
        hub.fetch_file(
            REPO,
            BIN,
            COMMIT,
            "0" * 64,
            endpoint=server.endpoint,
            cache_dir=cache,
            limits=download.Limits(offline=planted == "snapshot"),
        )
    assert "leads out of the Hub cache" in _refused(excinfo)
    assert victim.read_bytes() == b"precious"
    assert not any(r[0] == "GET" for r in server.requests)


def test_removal_is_refused_outside_the_cache_folder(tmp_path: Path) -> None:
    root = tmp_path / "cache" / "models--a--b"
    (root / "blobs").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (root / "escape").symlink_to(tmp_path, target_is_directory=True)
    for path in (victim, root / "blobs" / ".." / ".." / "victim", root / "escape" / "victim"):
        with pytest.raises(hub.DownloadError, match="outside the Hub cache folder"):
            download.remove_inside(path, root)
    assert victim.read_bytes() == b"precious"
    (root / "blobs" / "link").symlink_to(victim)
    download.remove_inside(root / "blobs" / "link", root)  # the link goes, not its target
    assert victim.exists() and not (root / "blobs" / "link").is_symlink()


@pytest.mark.parametrize("header", ["X-Linked-Size", "Content-Length"])
def test_a_terabyte_is_refused_before_the_body_is_read(server: HubServer, tmp_path: Path, header: str) -> None:
    cache = tmp_path / "hub-cache"
    server.headers = {"X-Linked-Size": None, header: str(10**12)}
    with pytest.raises(hub.DownloadError) as excinfo:
        hub.fetch_file(REPO, BIN, COMMIT, None, endpoint=server.endpoint, cache_dir=cache)
    assert "announces 1000000000000 bytes (931.3 GiB), over the 8.0 GiB limit" in _refused(excinfo)
    assert [r[0] for r in server.requests] == ["HEAD"]
    assert not any(p.is_file() and p.stat().st_size > 0 for p in cache.rglob("*"))


def test_an_endless_body_stops_at_the_cap_and_is_removed(server: HubServer, tmp_path: Path) -> None:
    cache = tmp_path / "hub-cache"
    server.headers = {"X-Linked-Size": None, "Content-Length": None}
    server.endless = True
    with pytest.raises(hub.DownloadError) as excinfo:
        hub.fetch_file(
            REPO, BIN, COMMIT, None, endpoint=server.endpoint, cache_dir=cache, limits=download.Limits(max_bytes=4096)
        )
    assert "sent more than the 4.0 KiB limit; stopped and removed the partial file" in _refused(excinfo)
    assert _blobs(cache) == []


def test_the_catalogue_size_caps_and_must_match(
    server: HubServer, checkpoint: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = checkpoint[0][BIN]
    sha = hashlib.sha256(data).hexdigest()
    _use_registry(monkeypatch, {"config.json": None, BIN: {"sha256": None, "size": len(data) + 1}})
    with pytest.raises(hub.DownloadError) as excinfo:
        hub.fetch_model("tiny", tmp_path / "bad", endpoint=server.endpoint, cache_dir=tmp_path / "c1")
    assert f"the catalogue records {len(data) + 1} bytes but 127.0.0.1" in _refused(excinfo)
    assert not any(r[0] == "GET" and r[1].endswith(BIN) for r in server.requests)
    # a server that sends no size is cut off at the catalogue's
    server.headers = {"X-Linked-Size": None, "Content-Length": None}
    server.endless = True
    with pytest.raises(hub.DownloadError, match="sent more than the 100 bytes limit"):
        hub.fetch_file(REPO, BIN, COMMIT, None, endpoint=server.endpoint, cache_dir=tmp_path / "c2", expected_size=100)
    server.headers, server.endless = {}, False
    _use_registry(monkeypatch, {"config.json": None, BIN: {"sha256": sha, "size": len(data)}})
    bundle = hub.fetch_model("tiny", tmp_path / "good", endpoint=server.endpoint, cache_dir=tmp_path / "c3")
    assert load_bundle(bundle).manifest["source"]["hub"][0]["files"][BIN] == sha
    with pytest.raises(InputError, match="must map to a sha256 string"):
        hub.file_spec(REPO, BIN, {"sha256": sha, "size": "big"})


@pytest.mark.parametrize("how", ["parameter", "HF_HUB_DOWNLOAD_TIMEOUT"])
def test_a_stalled_server_ends_in_an_error_not_a_hang(
    server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    server.stall = True
    timeout = 1.0 if how == "parameter" else None
    if how != "parameter":
        monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "1")
    began = time.monotonic()
    with pytest.raises(hub.DownloadError) as excinfo:
        hub.fetch_file(
            REPO,
            BIN,
            COMMIT,
            None,
            endpoint=server.endpoint,
            cache_dir=tmp_path / "c",
            limits=download.Limits(timeout=timeout),
        )
    assert time.monotonic() - began < 5
    assert f"no data from 127.0.0.1:{server.httpd.server_address[1]} for 1 s; try again later" in _refused(excinfo)
    assert _blobs(tmp_path / "c") == []  # nothing arrived: no empty partial file is left


def test_a_redirect_is_followed_without_the_token(
    server: HubServer, checkpoint: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    cdn = HubServer(dict(checkpoint[0]))
    try:
        server.redirect = cdn.endpoint
        fetched = hub.fetch_file(REPO, BIN, COMMIT, None, endpoint=server.endpoint, cache_dir=tmp_path / "c")
        assert fetched.path.read_bytes() == checkpoint[0][BIN]
        assert server.auth == [("HEAD", f"/{REPO}/resolve/{COMMIT}/{BIN}", "Bearer hf_secret")]
        assert cdn.auth == [("GET", f"/{REPO}/resolve/{COMMIT}/{BIN}", None)]
        server.redirect = "file://"
        with pytest.raises(hub.DownloadError, match="only http:// and https://"):
            hub.fetch_file(REPO, "config.json", COMMIT, None, endpoint=server.endpoint, cache_dir=tmp_path / "c")
    finally:
        cdn.close()


def test_the_cache_keeps_the_hub_layout_and_serves_offline(server: HubServer, checkpoint: Any, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    fetched = hub.fetch_file(REPO, BIN, "main", None, endpoint=server.endpoint, cache_dir=cache)
    folder = cache / f"models--{REPO.replace('/', '--')}"
    sha = hashlib.sha256(checkpoint[0][BIN]).hexdigest()
    assert fetched.path == folder / "snapshots" / COMMIT / BIN and fetched.commit == COMMIT
    assert os.readlink(fetched.path) == f"../../blobs/{sha}"
    assert (folder / "refs" / "main").read_text() == COMMIT
    server.requests.clear()
    again = hub.fetch_file(REPO, BIN, "main", None, cache_dir=cache, limits=download.Limits(offline=True))
    assert again.sha256 == sha and server.requests == []
    (folder / "refs" / "main").write_text("../../../x")
    with pytest.raises(hub.DownloadError, match="not a commit id"):
        hub.fetch_file(REPO, BIN, "main", None, cache_dir=cache, limits=download.Limits(offline=True))


@pytest.mark.parametrize(
    ("repo", "filename", "revision"),
    [
        ("../x", BIN, "main"),
        ("a/b/c", BIN, "main"),
        ("a/..", BIN, "main"),
        (REPO, "../../x", "main"),
        (REPO, "a\\b", "main"),
        (REPO, "/etc/passwd", "main"),
        (REPO, BIN, "../main"),
        (REPO, BIN, "/main"),
        (REPO, BIN, "a/../b"),
    ],
)
def test_names_are_checked_before_any_request(
    server: HubServer, tmp_path: Path, repo: str, filename: str, revision: str
) -> None:
    with pytest.raises(hub.DownloadError, match="Invalid"):
        hub.fetch_file(repo, filename, revision, None, endpoint=server.endpoint, cache_dir=tmp_path / "c")
    assert server.requests == [] and not (tmp_path / "c").exists()


def test_parse_size() -> None:
    assert download.parse_size("4096") == 4096
    assert download.parse_size("8G") == 8 * 1024**3
    assert download.parse_size("8gib") == 8 * 1024**3
    assert download.parse_size("1.5M") == 1536 * 1024
    assert download.parse_size(" 2T ") == 2 * 1024**4
    assert download.parse_size("512 KB") == download.parse_size("512k") == 512 * 1024
    for junk in ("abc", "-1", "0", "", "1.5", "0.0001K", "8X", "1e9", "8iB", "٣"):
        with pytest.raises(InputError, match="Invalid size"):
            download.parse_size(junk)
