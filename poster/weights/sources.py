"""Where weight files are downloaded from, and how to read a refusal from those places.

Every source is a plain HTTP(S) URL template; Google Drive and the Hugging Face Hub are two
templates with their own defaults, and ``POSTER_DOWNLOAD_URL`` (or ``url_template=``) points the
downloader at any mirror, e.g. ``http://127.0.0.1:8000/{file_name}`` in the tests.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from ..errors import DownloadError
from .locate import ENV_DIR, ENV_HUB_REPO
from ..models.weights_api import Weights

ENV_URL_TEMPLATE = "POSTER_DOWNLOAD_URL"  # e.g. https://mirror.example/poster/{file_name}
SOURCE_CHOICES = ("auto", "gdrive", "hub", "url")

# drive.usercontent with confirm=t skips the "can't scan for viruses" page that large files get.
GDRIVE_URL = "https://drive.usercontent.google.com/download?id={gdrive_id}&export=download&confirm=t"
GDRIVE_VIEW_URL = "https://drive.google.com/file/d/{gdrive_id}/view"
GDRIVE_FOLDER_VIEW_URL = "https://drive.google.com/drive/folders/{folder}"
# A public folder's file list as plain HTML (what gdown reads too): one "entry-<file id>" per file.
GDRIVE_FOLDER_LIST_URL = "https://drive.google.com/embeddedfolderview?id={folder}"
HUB_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class Source:
    """One place to fetch weight files from: a URL template and the headers it needs.

    The template may use ``{file_name}``, ``{path}`` (the file name below its architecture's
    folder, e.g. ``poster-v1/rafdb_best.pth``), ``{arch}``, ``{key}`` and ``{gdrive_id}``.
    """

    name: str
    url_template: str
    headers: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def url(self, weights: Weights) -> str:
        path = f"{weights.subdir}/{weights.file_name}" if weights.subdir else weights.file_name
        return self.url_template.format(file_name=quote(weights.file_name), path=quote(path), arch=weights.arch,
                                        key=weights.key, gdrive_id=weights.gdrive_id)


def gdrive_source() -> Source:
    return Source("Google Drive", GDRIVE_URL)


def hub_source(repo: str, file_name: str | None = None, revision: str = "main") -> Source:
    """A Hub model repository; files are named as in the registry (POSTER and ARM files in a folder
    per architecture) unless ``file_name`` says otherwise."""
    endpoint = os.environ.get("HF_ENDPOINT", HUB_ENDPOINT).rstrip("/")
    name = quote(file_name) if file_name else "{path}"
    return Source(f"Hub repository {repo}", f"{endpoint}/{repo}/resolve/{revision}/{name}",
                  headers=_hub_headers())


def url_source(template: str) -> Source:
    if "{" not in template:
        raise DownloadError(f"URL template {template!r} names no file: use {{file_name}}, {{key}} or {{gdrive_id}}")
    return Source(f"mirror {urlsplit(template).netloc or template}", template)


def sources_for(weights: Weights, source: str | Source = "auto", hub_repo: str | None = None,
                url_template: str | None = None) -> list[Source]:
    """The sources to try for one file, in order.

    ``auto``: a configured mirror, a configured Hub repository, the Hub repository the file is
    known to be published in (ir50), then Google Drive, whose daily quota fails most often.
    """
    if isinstance(source, Source):
        return [source]
    if source not in SOURCE_CHOICES:
        raise DownloadError(f"unknown source {source!r}; choose one of {', '.join(SOURCE_CHOICES)}")
    template = url_template or os.environ.get(ENV_URL_TEMPLATE)
    repo = hub_repo or os.environ.get(ENV_HUB_REPO)
    mirrors = [url_source(template)] if template else []
    hubs = [hub_source(repo)] if repo else []
    known_repo = weights.meta.get("hub_repo")
    if known_repo and known_repo != repo:
        hubs.append(hub_source(known_repo, weights.meta.get("hub_file", weights.file_name)))
    drive = [gdrive_source()] if weights.gdrive_id or weights.gdrive_folder else []
    if source == "url" and not mirrors:
        raise DownloadError(f"--source url needs a URL template: pass --url-template or set {ENV_URL_TEMPLATE}")
    if source == "hub" and not hubs:
        raise DownloadError(f"no Hub repository known for {weights.file_name}: pass --hub-repo or set {ENV_HUB_REPO}")
    chosen = {"url": mirrors, "hub": hubs, "gdrive": drive, "auto": mirrors + hubs + drive}[source]
    if not chosen:
        raise DownloadError(f"no source for {weights.file_name}")
    return chosen


def _hub_headers() -> dict[str, str]:
    """A Hub token, when one is configured, so that private or gated repositories work."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        try:
            from huggingface_hub import get_token
            token = get_token()
        except Exception:  # an old or missing huggingface_hub: public repositories still work
            token = None
    return {"Authorization": f"Bearer {token}"} if token else {}


# --- Reading HTML answers (Google Drive's warning, quota and error pages) ---------------------

def drive_link(weights: Weights) -> str:
    if not weights.gdrive_id and weights.gdrive_folder:
        return GDRIVE_FOLDER_VIEW_URL.format(folder=weights.gdrive_folder) + f" (the file {weights.file_name})"
    return GDRIVE_VIEW_URL.format(gdrive_id=weights.gdrive_id)


def folder_file_id(page: str, file_name: str) -> str | None:
    """The Drive file id of ``file_name`` in an ``embeddedfolderview`` page, if it lists the file."""
    for match in re.finditer(r'id="entry-([\w-]+)".*?class="flip-entry-title">([^<]*)<', page, re.S):
        if unescape(match[2]).strip() == file_name:
            return match[1]
    return None


def other_sources(weights: Weights) -> str:
    """Where else the file can come from, for when Google Drive no longer serves it."""
    path = f"{weights.subdir}/{weights.file_name}" if weights.subdir else weights.file_name
    return (f"other sources: a Hugging Face Hub repository holding {path} (--hub-repo REPO or ${ENV_HUB_REPO}), "
            f"a mirror (--url-template https://host/{{path}} or ${ENV_URL_TEMPLATE}), or by hand from "
            f"{drive_link(weights)}")


def confirmation_url(page: str, page_url: str) -> str | None:
    """The URL that Google Drive's "can't scan this file for viruses" form submits to, if any."""
    parser = _FormParser()
    parser.feed(page)
    if parser.action is None:
        return None
    parts = urlsplit(urljoin(page_url, unescape(parser.action)))
    query = dict(parse_qsl(parts.query)) | parser.fields
    return urlunsplit(parts._replace(query=urlencode(query)))


def describe_html(page: str, url: str, weights: Weights) -> str:
    """One line saying why an HTML page came back instead of the file."""
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", page))).lower()
    by_hand = f"download it in a browser from {drive_link(weights)}" if weights.gdrive_id else "download it by hand"
    if "too many users have viewed or downloaded" in text or "quota exceeded" in text:
        return (f"Google Drive refused: quota exceeded for {weights.file_name} (too many downloads in the "
                f"last 24 hours); try again later, use --source hub with a Hub copy, or {by_hand}")
    if "download-form" in page or "scan this file for viruses" in text or "virus scan warning" in text:
        return (f"Google Drive refused: {weights.file_name} needs confirmation (virus-scan warning page) "
                f"and confirming did not give the file; {by_hand}")
    if "accounts.google.com" in page or "you need access" in text or "does not exist" in text:
        return (f"Google Drive refused: {weights.file_name} does not exist or is not shared publicly; {by_hand}")
    title = re.search(r"<title[^>]*>(.*?)</title>", page, re.I | re.S)
    shown = " (" + re.sub(r"\s+", " ", unescape(title[1])).strip()[:80] + ")" if title else ""
    return f"{url} answered with an HTML page{shown}, not the weight file {weights.file_name}"


class _FormParser(HTMLParser):
    """Collects the action and hidden fields of Drive's ``<form id="download-form">``."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form" and attr.get("id") == "download-form" and self.action is None:
            self.action = attr.get("action", "")
            self._inside = True
        elif tag == "input" and self._inside and attr.get("type") == "hidden" and attr.get("name"):
            self.fields[attr["name"]] = attr.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


# --- The manual route, for when nothing can be reached -----------------------------------------

def manual_route(weights: list[Weights], dest_dir: str | Path) -> str:
    """Several lines: each file's Google Drive link, and the folder to put the files in."""
    lines = ["Download by hand:"]
    for w in weights:
        shown = f"{w.subdir}/{w.file_name}" if w.subdir else w.file_name
        lines.append(f"  {shown:<34} {drive_link(w) if w.gdrive_id or w.gdrive_folder else '(no link)'}")
        if w.meta.get("hub_repo"):
            hub_file = w.meta.get("hub_file", w.file_name)
            lines.append(f"  {'':<34} {HUB_ENDPOINT}/{w.meta['hub_repo']}/resolve/main/{hub_file}")
    lines.append(f"and put the files, names and folders as shown, in {Path(dest_dir).resolve()}/ "
                 f"(or in a folder named by {ENV_DIR}).")
    return "\n".join(lines)
