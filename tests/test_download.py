"""`poster.weights.download` against a small HTTP server on 127.0.0.1 (offline, bounded in time).

The server serves a released-style deterministic checkpoint and backbone files, plus the ways a real
download goes wrong: a truncated file, Google Drive's quota and virus-scan pages, a connection
that drops halfway, a server that ignores Range.
"""
from __future__ import annotations

import json
import socket
import sys
import threading
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import torch

from poster.weights import locate
from poster.weights import transfer
from poster.weights.checkpoints import MANIFEST_NAME, load_checkpoint, sha256_file
from poster.cli import main
from poster.weights.download import OfflineError, download, download_many
from poster.errors import DownloadError
from poster.weights.registry import get_weights
from poster.weights.sources import ENV_URL_TEMPLATE, confirmation_url, sources_for

from poster.weights.deterministic import deterministic_value, original_keys
from tests._checkpoints import checkpoint_file

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<p class="uc-error-caption">Sorry, you can't view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please
try accessing the file again later.</p></body></html>"""

WARNING_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><p>Google Drive can't scan this file for viruses.</p><p>{name} is too large for Google to
scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{action}" method="get"><input type="submit" value="Download anyway">
<input type="hidden" name="id" value="1aVm"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="0b1c-77"></form>
</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    """``/MODE/NAME``: MODE says how to answer for the file NAME (see the module docstring)."""

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        server = self.server
        parts = urlsplit(self.path)
        mode, _, rest = parts.path.lstrip("/").partition("/")
        name = rest.rsplit("/", 1)[-1]
        server.requests.append((parts.path, self.headers.get("Range"), self.headers.get("Authorization"),
                                parts.query))
        server.hits[parts.path] += 1
        data = server.files.get(rest, server.files.get(name))
        if mode == "folder":  # a Drive folder's embeddedfolderview listing
            return self._page("".join(f'<div class="flip-entry" id="entry-{i}"><div class="flip-entry-title">{n}</div>'
                                      for i, n in server.folder.items()))
        if mode == "quota":
            return self._page(QUOTA_PAGE)
        if mode == "sniff":  # an HTML page that does not say so
            return self._page(QUOTA_PAGE, content_type="application/octet-stream")
        if mode == "warn":
            return self._page(WARNING_PAGE.format(name=name, action=f"http://{self.headers['Host']}/confirmed/{name}"))
        if mode == "warnloop":  # confirming leads to the same page again
            return self._page(WARNING_PAGE.format(name=name, action=f"/warnloop/{name}"))
        if data is None:
            return self.send_error(404)
        if mode == "confirmed":
            query = parse_qs(parts.query)
            if query.get("confirm") != ["t"] or query.get("uuid") != ["0b1c-77"]:
                return self.send_error(400)
            return self._file(data)
        if mode in ("good", "hub"):
            return self._file(data)
        if mode == "norange":
            return self._file(data, honour_range=False)
        if mode == "truncated":
            return self._file(data[: len(data) * 6 // 10])
        if mode == "drop":
            return self._file(data, honour_range=False, stop_at=len(data) // 2)
        if mode == "flaky":  # drops the first time, then behaves
            return self._file(data, stop_at=len(data) // 2 if server.hits[parts.path] == 1 else None)
        return self.send_error(404)

    def _page(self, html: str, content_type: str = "text/html; charset=utf-8") -> None:
        body = html.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, data: memoryview, honour_range: bool = True, stop_at: int | None = None) -> None:
        start = 0
        wanted = self.headers.get("Range")
        if wanted and honour_range:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))  # the full size, even when dropping
        self.end_headers()
        end = len(data) if stop_at is None else max(stop_at, start + 1)
        for i in range(start, end, 1 << 20):
            self.wfile.write(data[i:min(i + (1 << 20), end)])
        self.wfile.flush()
        self.close_connection = True  # a drop: fewer bytes than announced, then the connection closes


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, memoryview]:
    """Served files by name: the float32 deterministic checkpoint (~230 MB) and backbones built from it."""
    folder = tmp_path_factory.mktemp("served")
    checkpoint_file(folder / "rafdb_best.pth", num_classes=7)
    keys = original_keys("poster-v2", 7)
    ir50 = {n.removeprefix("ir_back."): torch.from_numpy(deterministic_value(n, s)).half()
            for n, s, kind in keys if n.startswith("ir_back.") and kind != "int64"}
    ir50.update({n.removeprefix("ir_back."): torch.zeros(s, dtype=torch.int64)
                 for n, s, kind in keys if n.startswith("ir_back.") and kind == "int64"})
    mobilefacenet = {n.removeprefix("face_landback."): torch.from_numpy(deterministic_value(n, s)).float()
                     if kind != "int64" else torch.zeros(s, dtype=torch.int64)
                     for n, s, kind in keys if n.startswith("face_landback.")}
    torch.save(ir50, folder / "ir50.pth")
    torch.save({"state_dict": mobilefacenet}, folder / "mobilefacenet_model_best.pth.tar")
    files = {p.name: memoryview(p.read_bytes()) for p in folder.iterdir()}
    files["affectnet8_best.pth"] = files["rafdb_best.pth"]  # 7 classes where 8 are asked for
    files["wrong-ir50.pth"] = files["mobilefacenet_model_best.pth.tar"]
    files["poster-v1/rafdb_best.pth"] = memoryview(checkpoint_file(folder / "v1.pth", "poster-v1").read_bytes())
    files["drive-v1-id"] = files["poster-v1/rafdb_best.pth"]
    files["arm/epoch59_acc0.9205.pth"] = memoryview(checkpoint_file(folder / "arm.pth", "arm").read_bytes())
    return files


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that stops reading (a cancelled download) is expected here, not a failure.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(weight_files: dict[str, memoryview]):
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.files = weight_files
    httpd.requests = []
    httpd.hits = Counter()
    httpd.folder = {"drive-v1-id": "rafdb_best.pth", "other-id": "ir50.pth"}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def url(server):
    """``url("good")`` -> a URL template for that answering mode of the server."""
    server.requests.clear()
    return lambda mode: f"http://127.0.0.1:{server.server_port}/{mode}/{{file_name}}"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No settings from the person running the tests, no proxy for 127.0.0.1, no stray checkpoints/."""
    for name in (locate.ENV_DIR, locate.ENV_HUB_REPO, ENV_URL_TEMPLATE, "HF_ENDPOINT", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(transfer, "RETRY_PAUSE_S", 0.0)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory: pytest.TempPathFactory, server) -> tuple[Path, list[tuple[int, int | None]]]:
    """One successful RAF-DB download shared by the tests that only read its result."""
    folder = tmp_path_factory.mktemp("downloaded")
    calls: list[tuple[int, int | None]] = []
    url = f"http://127.0.0.1:{server.server_port}/good/{{file_name}}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        download("raf-db", folder, url_template=url, quiet=True, progress=lambda d, t: calls.append((d, t)))
    return folder, calls


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _nothing_in_place(folder: Path, file_name: str) -> None:
    """Neither the file nor anything the loader would take for it."""
    assert not (folder / file_name).exists()
    assert locate.find_local(get_weights(file_name), [folder]) is None
    assert not (folder / MANIFEST_NAME).exists() or file_name not in json.loads(
        (folder / MANIFEST_NAME).read_text())["files"]


# --- success ---------------------------------------------------------------------------------------

def test_download_puts_verified_file_with_manifest_entry(downloaded, weight_files, server):
    folder, calls = downloaded
    path = folder / "rafdb_best.pth"
    assert path.read_bytes() == bytes(weight_files["rafdb_best.pth"])
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME, "rafdb_best.pth"]  # no .partial left
    entry = json.loads((folder / MANIFEST_NAME).read_text())["files"]["rafdb_best.pth"]
    assert entry["sha256"] == sha256_file(path)
    assert entry["key"] == "raf-db"
    assert entry["bytes"] == path.stat().st_size
    assert entry["source"] == f"http://127.0.0.1:{server.server_port}/good/rafdb_best.pth"
    datetime.fromisoformat(entry["downloaded"])


def test_progress_callback_counts_up_to_the_size(downloaded):
    folder, calls = downloaded
    size = (folder / "rafdb_best.pth").stat().st_size
    assert len(calls) > 10
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (size, size)


def test_load_checkpoint_finds_the_download_by_name(downloaded, monkeypatch):
    folder, _ = downloaded
    monkeypatch.setenv(locate.ENV_DIR, str(folder))
    model = load_checkpoint("raf-db", channels_last=False)
    assert model.info.dataset == "raf-db"
    assert model.info.sha256 == sha256_file(folder / "rafdb_best.pth")


def test_second_download_keeps_the_verified_file_without_network(downloaded):
    folder, _ = downloaded
    messages: list[str] = []
    unreachable = f"http://127.0.0.1:{_closed_port()}/{{file_name}}"
    path = download("raf-db", folder, url_template=unreachable, quiet=True, status=messages.append)
    assert path == folder / "rafdb_best.pth"
    assert "already" in messages[-1]


def test_google_drive_warning_form_is_confirmed(url, tmp_path, server):
    path = download("raf-db", tmp_path, url_template=url("warn"), quiet=True)
    assert path.is_file()
    confirmed = [r for r in server.requests if r[0].startswith("/confirmed/")]
    assert confirmed and "uuid=0b1c-77" in confirmed[0][3]


def test_backbone_from_the_hub_repository_it_is_published_in(url, tmp_path, server, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}/hub")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    path = download("ir50", tmp_path, source="hub", quiet=True)
    assert path == tmp_path / "ir50.pth"
    assert server.requests[0][0] == "/hub/KaliberAI/posterv2_ir50/resolve/main/ir50.pth"
    assert server.requests[0][2] == "Bearer hf_test_token"
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["files"]["ir50.pth"]["key"] == "ir50"


def test_configured_hub_repository_serves_every_file(url, tmp_path, server, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}/hub")
    monkeypatch.setenv(locate.ENV_HUB_REPO, "someone/poster-weights")
    download("mobilefacenet", tmp_path, source="hub", quiet=True)
    assert server.requests[0][0] == "/hub/someone/poster-weights/resolve/main/mobilefacenet_model_best.pth.tar"


# --- failures leave nothing where the loader looks, and a rerun succeeds ---------------------------

@pytest.mark.slow  # a whole checkpoint downloaded again
def test_truncated_file_is_refused_and_a_rerun_succeeds(url, tmp_path):
    with pytest.raises(DownloadError, match=r"does not verify.*rafdb_best\.pth is truncated or corrupt"):
        download("raf-db", tmp_path, url_template=url("truncated"), quiet=True)
    _nothing_in_place(tmp_path, "rafdb_best.pth")
    assert list(tmp_path.iterdir()) == []  # the bad partial file is removed too
    assert download("raf-db", tmp_path, url_template=url("good"), quiet=True).is_file()


@pytest.mark.parametrize("mode", ["quota", "sniff"])
def test_google_drive_quota_page_is_reported_never_saved(url, tmp_path, mode):
    with pytest.raises(DownloadError, match="Google Drive refused: quota exceeded") as info:
        download("raf-db", tmp_path, url_template=url(mode), quiet=True)
    assert "https://drive.google.com/file/d/1aVm_hmJyZ5E_0p25XTbm3X9ophsKqCxv/view" in str(info.value)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_google_drive_warning_that_never_lets_through(url, tmp_path):
    with pytest.raises(DownloadError, match="Google Drive refused: rafdb_best.pth needs confirmation"):
        download("raf-db", tmp_path, url_template=url("warnloop"), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_keeps_only_a_partial_file_then_resumes(url, tmp_path, server, weight_files):
    with pytest.raises(DownloadError, match="dropped after .* bytes.*run the download again to resume"):
        download("raf-db", tmp_path, url_template=url("drop"), quiet=True, retries=0)
    _nothing_in_place(tmp_path, "rafdb_best.pth")
    partial = tmp_path / "rafdb_best.pth.partial"
    kept = partial.stat().st_size  # up to half: bytes of an unfinished read chunk are lost in the drop
    assert 0 < kept <= len(weight_files["rafdb_best.pth"]) // 2
    server.requests.clear()
    path = download("raf-db", tmp_path, url_template=url("good"), quiet=True)
    assert server.requests[0][1] == f"bytes={kept}-"  # resumed, not started over
    assert path.read_bytes() == bytes(weight_files["rafdb_best.pth"])
    assert not partial.exists()


@pytest.mark.slow  # a whole checkpoint downloaded again
def test_server_that_ignores_range_restarts_cleanly(url, tmp_path, weight_files):
    (tmp_path / "rafdb_best.pth.partial").write_bytes(b"\0" * 12345)  # left by some earlier attempt
    path = download("raf-db", tmp_path, url_template=url("norange"), quiet=True)
    assert path.read_bytes() == bytes(weight_files["rafdb_best.pth"])


@pytest.mark.slow  # a whole checkpoint downloaded again
def test_drop_is_resumed_within_one_call_when_retries_allow(url, tmp_path, server):
    path = download("raf-db", tmp_path, url_template=url("flaky"), quiet=True, retries=1)
    assert path.is_file()
    assert [r[1] is not None for r in server.requests] == [False, True]


def test_wrong_number_of_classes_is_refused(url, tmp_path):
    with pytest.raises(DownloadError, match="has 7 classes but AffectNet-8 has 8"):
        download("affectnet-8", tmp_path, url_template=url("good"), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_backbone_whose_keys_do_not_account_is_refused(url, server, tmp_path):
    template = f"http://127.0.0.1:{server.server_port}/good/wrong-{{file_name}}"
    with pytest.raises(DownloadError, match="does not verify.*ir50"):
        download("ir50", tmp_path, url_template=template, source="url", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_damaged_file_in_place_is_replaced(url, tmp_path, weight_files):
    target = tmp_path / "mobilefacenet_model_best.pth.tar"
    target.write_bytes(b"PK\3\4 not really a checkpoint")
    messages: list[str] = []
    download("mobilefacenet", tmp_path, url_template=url("good"), quiet=True, status=messages.append)
    assert target.read_bytes() == bytes(weight_files[target.name])
    assert any("does not verify" in m for m in messages)


class _Cancelled(Exception):
    pass


def test_stopping_from_the_progress_callback_leaves_no_file_in_place(url, tmp_path):
    def stop(done: int, total: int | None) -> None:
        raise _Cancelled  # what the app does when a visitor cancels

    with pytest.raises(_Cancelled):
        download("raf-db", tmp_path, url_template=url("good"), quiet=True, progress=stop)
    _nothing_in_place(tmp_path, "rafdb_best.pth")


def test_no_network_is_reported_at_once_with_the_manual_route(tmp_path, monkeypatch):
    attempts = []

    def counted_get(*args, **kwargs):
        attempts.append(args[1])
        return real_get(*args, **kwargs)

    real_get = transfer._get
    monkeypatch.setattr(transfer, "_get", counted_get)
    with pytest.raises(OfflineError) as info:
        download("raf-db", tmp_path / "ck", url_template=f"http://127.0.0.1:{_closed_port()}/{{file_name}}",
                 source="url", quiet=True)
    assert len(attempts) == 1  # at once: a refused connection is not retried
    message = str(info.value)
    assert "connection refused" in message
    assert "https://drive.google.com/file/d/1aVm_hmJyZ5E_0p25XTbm3X9ophsKqCxv/view" in message
    assert str((tmp_path / "ck").resolve()) in message
    assert list((tmp_path / "ck").iterdir()) == []


def test_download_many_raises_every_failure_together(url, tmp_path):
    with pytest.raises(DownloadError, match=r"AffectNet-8 has 8.* \| unknown weight file 'no-such-thing'"):
        download_many(["mobilefacenet", "affectnet-8", "no-such-thing"], tmp_path,
                      url_template=url("good"), quiet=True)
    assert (tmp_path / "mobilefacenet_model_best.pth.tar").is_file()


# --- command line --------------------------------------------------------------------------------

def test_cli_downloads_and_prints_the_path(url, tmp_path, capsys):
    rc = main(["download", "mobilefacenet", "--dir", str(tmp_path / "ck"), "--url-template", url("good"), "--quiet"])
    assert rc == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "ck" / "mobilefacenet_model_best.pth.tar")
    assert "loader does not look in" in err  # the folder is neither checkpoints/ nor POSTER_CHECKPOINT_DIR


def test_cli_offline_lists_every_link_and_the_folder(tmp_path, capsys):
    dead = f"http://127.0.0.1:{_closed_port()}/{{file_name}}"
    rc = main(["download", "raf-db", "ir50", "--source", "url", "--url-template", dead, "--quiet"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "Download by hand" in err
    assert "https://drive.google.com/file/d/17QAIPlpZUwkQzOTNiu-gUFLTqAxS-qHt/view" in err
    assert "https://huggingface.co/KaliberAI/posterv2_ir50/resolve/main/ir50.pth" in err
    assert f"{(tmp_path / 'checkpoints').resolve()}/" in err
    assert not (tmp_path / "checkpoints" / "rafdb_best.pth").exists()


def test_cli_without_names_lists_the_files(capsys):
    assert main(["download"]) == 2
    out = capsys.readouterr().out
    assert "raf-db" in out and "mobilefacenet" in out and "not downloaded" in out


def test_cli_unknown_name_fails_before_downloading(capsys):
    assert main(["download", "imagenet"]) == 1
    assert "unknown weight file 'imagenet'" in capsys.readouterr().err


# --- sources -------------------------------------------------------------------------------------

def test_auto_tries_mirror_then_hub_then_google_drive(monkeypatch):
    ir50 = get_weights("ir50")
    assert [s.name for s in sources_for(ir50)] == ["Hub repository KaliberAI/posterv2_ir50", "Google Drive"]
    assert [s.name for s in sources_for(get_weights("raf-db"))] == ["Google Drive"]
    monkeypatch.setenv(ENV_URL_TEMPLATE, "https://mirror.example/{file_name}")
    monkeypatch.setenv(locate.ENV_HUB_REPO, "me/weights")
    names = [s.name for s in sources_for(ir50)]
    assert names == ["mirror mirror.example", "Hub repository me/weights",
                     "Hub repository KaliberAI/posterv2_ir50", "Google Drive"]
    assert sources_for(get_weights("raf-db"), "gdrive")[0].url(get_weights("raf-db")) == (
        "https://drive.usercontent.google.com/download?id=1aVm_hmJyZ5E_0p25XTbm3X9ophsKqCxv&export=download&confirm=t")


def test_hub_source_without_a_repository_says_how_to_name_one():
    with pytest.raises(DownloadError, match="--hub-repo or set POSTER_HUB_REPO"):
        sources_for(get_weights("raf-db"), "hub")


def test_confirmation_form_keeps_every_hidden_field():
    page = WARNING_PAGE.format(name="x.pth", action="/download?id=old&amp;export=download")
    found = urlsplit(confirmation_url(page, "https://drive.usercontent.google.com/download?id=1aVm"))
    assert found.netloc == "drive.usercontent.google.com"
    assert parse_qs(found.query) == {"id": ["1aVm"], "export": ["download"], "confirm": ["t"], "uuid": ["0b1c-77"]}
    assert confirmation_url(QUOTA_PAGE, "https://example.org/") is None


# --- POSTER and ARM files ---------------------------------------------------------------------------

@pytest.mark.slow  # downloads POSTER's and ARM's full checkpoints
def test_poster_v1_and_arm_download_apart_from_poster_v2(url, tmp_path, downloaded):
    template = url("good").replace("{file_name}", "{path}")
    v1 = download("poster-v1-raf-db", tmp_path, url_template=template, quiet=True)
    arm = download("arm-raf-db", tmp_path, url_template=template, quiet=True)
    assert v1 == tmp_path / "poster-v1" / "rafdb_best.pth" and arm == tmp_path / "arm" / "epoch59_acc0.9205.pth"
    manifest = json.loads((tmp_path / "poster-v1" / MANIFEST_NAME).read_text())["files"]
    assert manifest["rafdb_best.pth"]["key"] == "poster-v1-raf-db"
    assert manifest["rafdb_best.pth"]["sha256"] == sha256_file(v1)
    (tmp_path / "rafdb_best.pth").write_bytes((downloaded[0] / "rafdb_best.pth").read_bytes())  # POSTER++ beside
    assert locate.find_local(get_weights("raf-db"), [tmp_path]) == tmp_path / "rafdb_best.pth"
    assert locate.find_local(get_weights("poster-v1-raf-db"), [tmp_path]) == v1
    assert load_checkpoint(v1).info.arch == "poster-v1" and load_checkpoint(arm).info.arch == "arm"


@pytest.mark.slow  # a whole checkpoint downloaded again
def test_poster_v1_comes_from_its_google_drive_folder(url, tmp_path, server, monkeypatch):
    from poster.weights import sources

    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(sources, "GDRIVE_FOLDER_LIST_URL", base + "/folder/{folder}")
    monkeypatch.setattr(sources, "GDRIVE_URL", base + "/good/{gdrive_id}")
    said = []
    path = download("poster-v1-raf-db", tmp_path, source="gdrive", quiet=True, status=said.append)
    assert path == tmp_path / "poster-v1" / "rafdb_best.pth"
    assert any("Google Drive folder 1jeCPTGjBL8YgKKB9YrI9TYZywme8gymv" in m for m in said)
    assert [r[0] for r in server.requests] == ["/folder/1jeCPTGjBL8YgKKB9YrI9TYZywme8gymv", "/good/drive-v1-id"]


def test_file_drive_no_longer_serves_lists_the_other_sources(url, tmp_path, server, monkeypatch):
    from poster.weights import sources

    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(sources, "GDRIVE_URL", base + "/gone/{gdrive_id}")
    monkeypatch.setattr(sources, "GDRIVE_FOLDER_LIST_URL", base + "/folder/{folder}")
    server.folder = {"other-id": "ir50.pth"}
    try:
        with pytest.raises(DownloadError) as info:
            download("arm-raf-db", tmp_path, source="gdrive", quiet=True)
        message = str(info.value)
        assert "could not download epoch59_acc0.9205.pth: Google Drive:" in message
        assert "other sources: a Hugging Face Hub repository holding arm/epoch59_acc0.9205.pth (--hub-repo" in message
        assert "a mirror (--url-template" in message
        assert "https://drive.google.com/file/d/1v5j0WUxOMeDXOFBVIJaDSnGdYef3KSxO/view" in message
        with pytest.raises(DownloadError, match="Google Drive no longer serves rafdb_best.pth: folder .* does not list it"):
            download("poster-v1-raf-db", tmp_path, source="gdrive", quiet=True)
    finally:
        server.folder = {"drive-v1-id": "rafdb_best.pth", "other-id": "ir50.pth"}
    assert not (tmp_path / "arm" / "epoch59_acc0.9205.pth").exists()


def test_cli_listing_groups_files_by_architecture(capsys):
    assert main(["download"]) == 2
    out = capsys.readouterr().out
    assert out.index(" POSTER++:") < out.index(" POSTER:") < out.index(" ARM:") < out.index(" pretrained backbones:")
    assert "poster-v1/rafdb_best.pth" in out and "arm/epoch59_acc0.9205.pth" in out
