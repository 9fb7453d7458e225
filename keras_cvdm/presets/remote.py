"""Preset archives from a URL: downloaded once, verified, checked, extracted atomically.

The cache has `keras.utils.get_file`'s layout: `<cache>/keras_cvdm_presets/<name><suffix>`
holds the archive and `<name>_extracted/` its content, `<name>` being the first 16 digits
of the archive's sha256. Both steps are done here rather than by `get_file`, which has no
network timeout, skips an unsafe member with a warning and extracts the rest, and extracts
in place (a failure leaves a half-written folder behind):

- the download streams into a temporary file with a timeout (`timeout`, seconds without
  an answer), is hashed on the way, and is moved into the cache only when its sha256
  matches; a cached archive is hashed again before it is used;
- before anything is written, every member is checked: no absolute path, no `..`, no link
  or special file, a preset folder (`config.json` at the top level or in one top-level
  folder), and at most `max_extracted_bytes` of content in all (by default the larger of
  256 MiB and 10 times the archive's size: a preset's weights hardly compress, so more
  is a decompression bomb);
- the members are written into a temporary folder, files with mode `0o644` and folders
  `0o755` whatever the archive says (no setuid, setgid, sticky or executable bits), and
  the folder is renamed into place only once it is complete, so a failed extraction
  leaves nothing behind and the next call starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile

CACHE_SUBDIR = "keras_cvdm_presets"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
#: Seconds a download waits for the server to connect or to send more data.
DOWNLOAD_TIMEOUT_S = 60.0
#: The default limit on an archive's extracted content is the larger of this and
#: `EXTRACTED_RATIO` times the archive's size.
MIN_EXTRACTED_LIMIT = 256 * 2**20
EXTRACTED_RATIO = 10
FILE_MODE = 0o644
DIR_MODE = 0o755
_COMPLETE = ".extracted"  # written last into an extraction folder: {"sha256", "root"}
_CHUNK = 1 << 20


def fetch_preset_archive(url: str, sha256: str | None, cache_dir: str | None = None, *,
                         root_file: str, timeout: float = DOWNLOAD_TIMEOUT_S,
                         max_extracted_bytes: int | None = None,
                         refresh: bool = False) -> str:
    """Download (once), verify and extract a preset archive; return its preset folder.

    Args:
        url: `https://` (or `http://`) URL of a `.tar.gz`, `.tgz`, `.tar` or `.zip` file.
        sha256: the archive's hex sha256 (64 digits), required.
        cache_dir: the cache root (default: `cache_root()`, i.e. `$KERAS_HOME` or `~/.keras`).
        root_file: the file that marks the preset folder (at the archive's top level or
            in its one top-level folder).
        timeout: seconds to wait for the server to connect or to send more data.
        max_extracted_bytes: the most bytes the archive may expand to; default: the larger
            of 256 MiB and 10 times the archive's size.
        refresh: discard the extracted folder (e.g. a damaged one) and extract the
            archive again; the archive is hashed again and downloaded again if it no
            longer matches `sha256`.

    Returns:
        The extracted folder that holds `root_file`.

    Examples:
        >>> fetch_preset_archive("https://example.org/p.tar.gz", sha256=None,
        ...                      root_file="config.json")
        Traceback (most recent call last):
        ...
        ValueError: Loading a preset from a URL needs its sha256 (64 hex digits), got None: ...
    """
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise ValueError(
            f"Loading a preset from a URL needs its sha256 (64 hex digits), got {sha256!r}: "
            "call from_preset(url, sha256='…') with the checksum published with the archive."
        )
    sha256 = sha256.lower()
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"{url!r} is not an https:// (or http://) URL of a preset archive.")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(
            f"timeout must be a positive number of seconds, got {timeout!r}; e.g. "
            f"timeout={DOWNLOAD_TIMEOUT_S:g}."
        )
    if max_extracted_bytes is not None and (
        isinstance(max_extracted_bytes, bool) or not isinstance(max_extracted_bytes, int)
        or max_extracted_bytes <= 0
    ):
        raise ValueError(
            f"max_extracted_bytes must be a positive int (bytes) or None (the default "
            f"limit), got {max_extracted_bytes!r}."
        )
    base = os.path.basename(url.split("?", 1)[0])
    suffix = next((s for s in ARCHIVE_SUFFIXES if base.endswith(s)), None)
    if suffix is None:
        raise ValueError(
            f"{url} is not a .tar.gz, .tgz, .tar or .zip preset archive; pack the folder "
            "written by keras_cvdm.save_preset into one of these and publish its sha256."
        )
    folder = os.path.join(cache_root(cache_dir), CACHE_SUBDIR)
    os.makedirs(folder, exist_ok=True)
    archive = os.path.join(folder, sha256[:16] + suffix)
    extracted = os.path.join(folder, f"{sha256[:16]}_extracted")
    if refresh:
        shutil.rmtree(extracted, ignore_errors=True)
    root = _completed_root(extracted, sha256)
    if root is not None:
        return root
    if not (os.path.isfile(archive) and _sha256_of(archive) == sha256):
        _download(url, archive, sha256, timeout)
    if max_extracted_bytes is None:
        max_extracted_bytes = max(MIN_EXTRACTED_LIMIT,
                                  EXTRACTED_RATIO * os.path.getsize(archive))
    members = check_archive_members(archive, max_extracted_bytes)
    root = _preset_root(members, root_file, url)
    _extract(archive, members, extracted, sha256, root)
    return os.path.join(extracted, root)


def check_archive_members(archive: str, max_extracted_bytes: int | None = None) -> list:
    """Refuse an archive with a member that would leave its folder, a link, a device, or
    more content than `max_extracted_bytes`; nothing is extracted.

    Args:
        archive: path of a `.tar(.gz)` or `.zip` file.
        max_extracted_bytes: the most bytes its files may hold in all (None: no limit).

    Returns:
        The members as `(name, is_dir, size)` tuples, `name` relative and `/`-separated
        (no `.` parts); raises `ValueError` naming the first unsafe member.

    Examples:
        >>> import io, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "bad.tar")
        >>> with tarfile.open(path, "w") as tf:
        ...     tf.addfile(tarfile.TarInfo("../escape.txt"), io.BytesIO(b""))
        >>> check_archive_members(path)
        Traceback (most recent call last):
        ...
        ValueError: Refusing to extract the preset archive: member '../escape.txt' would ...
    """
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                listed = [(info.filename, info.is_dir(),
                           info.is_dir() or not _zip_is_special(info), info.file_size)
                          for info in zf.infolist()]
        else:
            with tarfile.open(archive) as tf:
                listed = [(m.name, m.isdir(), m.isfile() or m.isdir(), m.size)
                          for m in tf.getmembers()]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(
            f"{archive} is not a readable .tar(.gz) or .zip archive ({error}); nothing was "
            "extracted. Pack the preset folder again and publish the archive with its sha256."
        ) from error
    members, total = [], 0
    for name, is_dir, regular, size in listed:
        parts = name.replace("\\", "/").split("/")
        if os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in parts:
            raise ValueError(
                f"Refusing to extract the preset archive: member {name!r} would be written "
                "outside the extraction folder. The archive is unsafe; nothing was extracted."
            )
        if not regular:
            raise ValueError(
                f"Refusing to extract the preset archive: member {name!r} is a link or a "
                "special file. Nothing was extracted."
            )
        total += 0 if is_dir else size
        if max_extracted_bytes is not None and total > max_extracted_bytes:
            raise ValueError(
                f"Refusing to extract the preset archive: its files hold more than "
                f"{max_extracted_bytes} bytes (the limit on extracted content; "
                f"{name!r} reaches {total}). A preset is a few files of weights that hardly "
                "compress; if this archive is trusted, pass a larger max_extracted_bytes= "
                "to from_preset. Nothing was extracted."
            )
        clean = "/".join(p for p in parts if p not in ("", "."))
        if clean:
            members.append((clean, is_dir, size))
    return members


def cache_root(cache_dir: str | None = None) -> str:
    """The cache folder: `cache_dir`, else `$KERAS_HOME`, else `~/.keras` (as Keras does).

    Keras reads `$KERAS_HOME` once, when it is imported; here it is read at each call.

    Args:
        cache_dir: a folder (`~` is expanded), or None.

    Returns:
        The absolute path of the cache root.

    Examples:
        >>> cache_root("/data/cache")
        '/data/cache'
    """
    if cache_dir is None:
        home = os.path.expanduser("~")
        cache_dir = os.environ.get("KERAS_HOME") or os.path.join(
            home if os.access(home, os.W_OK) else "/tmp", ".keras"
        )
    return os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))


def _zip_is_special(info) -> bool:
    """A zip member whose Unix mode (if any) is not a regular file (a link, a device)."""
    mode = info.external_attr >> 16
    return bool(mode) and (mode & 0o170000) not in (0, 0o100000)


def _sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url, target, sha256, timeout):
    """Stream `url` into `target` through a temporary file, kept only if its sha256 matches."""
    fd, part = tempfile.mkstemp(prefix=".download-", dir=os.path.dirname(target))
    digest = hashlib.sha256()
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                for chunk in iter(lambda: r.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except urllib.error.HTTPError as error:
            raise ValueError(
                f"Downloading {url} failed: HTTP {error.code} {error.reason}. Check the URL; "
                "nothing was extracted."
            ) from error
        except (TimeoutError, urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(error, TimeoutError) or isinstance(reason, TimeoutError):
                raise ValueError(
                    f"Downloading {url} failed: the server did not answer within {timeout:g} s. "
                    "Check the URL and the connection, or wait longer with a larger timeout, "
                    f"e.g. from_preset(url, sha256=..., timeout={max(10 * timeout, 300):g}). "
                    "Nothing was extracted."
                ) from error
            raise ValueError(
                f"Downloading {url} failed ({reason}). Check the URL and the connection; "
                "nothing was extracted."
            ) from error
        if digest.hexdigest() != sha256:
            raise ValueError(
                f"The file downloaded from {url} has sha256 {digest.hexdigest()}, not the "
                f"{sha256} given: it is not the published archive, or was damaged on the "
                "way. Check the URL and the checksum; nothing was extracted."
            )
        os.replace(part, target)
    finally:
        if os.path.exists(part):
            os.remove(part)


def _preset_root(members, root_file, url):
    """The preset folder inside the archive, from its member names: '' or its one folder."""
    files = {name for name, is_dir, _ in members if not is_dir}
    if root_file in files:
        return ""
    tops = {name.split("/", 1)[0] for name, _, _ in members if not name.startswith(".")}
    if len(tops) == 1 and f"{next(iter(tops))}/{root_file}" in files:
        return next(iter(tops))
    raise ValueError(
        f"The archive from {url} holds no preset folder (no {root_file} at its top level or "
        "in a single top-level folder); nothing was extracted. Pack the folder written by "
        "keras_cvdm.save_preset and publish the new archive with its sha256."
    )


def _extract(archive, members, extracted, sha256, root):
    """Write `members` into a temporary folder beside `extracted`, then rename it there."""
    parent = os.path.dirname(extracted)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(extracted)}-", dir=parent)
    try:
        wanted = {name for name, is_dir, _ in members}
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _write_member(tmp, info.filename, info.is_dir(), info.file_size,
                                  lambda info=info: zf.open(info), wanted)
        else:
            with tarfile.open(archive) as tf:
                for m in tf.getmembers():
                    if not (m.isfile() or m.isdir()):
                        continue  # refused by check_archive_members; never written
                    _write_member(tmp, m.name, m.isdir(), m.size,
                                  lambda m=m: tf.extractfile(m), wanted)
        for folder, _, _ in os.walk(tmp):
            os.chmod(folder, DIR_MODE)
        with open(os.path.join(tmp, _COMPLETE), "w") as f:
            json.dump({"sha256": sha256, "root": root}, f)
        os.chmod(os.path.join(tmp, _COMPLETE), FILE_MODE)
        if os.path.lexists(extracted) and _completed_root(extracted, sha256) is None:
            shutil.rmtree(extracted)  # an older, incomplete extraction
        try:
            os.rename(tmp, extracted)
        except OSError:
            if _completed_root(extracted, sha256) is None:  # not another process's copy
                raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(
            f"{archive} could not be extracted ({error}): the archive matches its sha256, so "
            "it was published damaged. Nothing was kept; publish a fixed archive with its "
            "new sha256."
        ) from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_member(tmp, name, is_dir, size, open_member, wanted):
    clean = "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if not clean or clean not in wanted:
        return
    path = os.path.join(tmp, *clean.split("/"))
    if is_dir:
        os.makedirs(path, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    written = 0
    with open_member() as src, open(path, "wb") as out:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            written += len(chunk)
            if written > size:  # a member never writes more than it declared
                raise ValueError(f"Archive member {name!r} holds more than its {size} bytes.")
            out.write(chunk)
    os.chmod(path, FILE_MODE)


def _completed_root(extracted, sha256):
    """The preset folder of a complete extraction of `sha256`, else None."""
    try:
        with open(os.path.join(extracted, _COMPLETE)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("sha256") != sha256:
        return None
    root = marker.get("root")
    if not isinstance(root, str) or ".." in root.split("/"):
        return None
    return os.path.join(extracted, root)
