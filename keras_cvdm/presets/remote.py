"""Preset archives from a URL, through `keras.utils.get_file`.

`get_file` downloads once into the Keras cache (`$KERAS_HOME`, by default `~/.keras`),
checks the sha256, and extracts with tarfile's "data" filter (no absolute paths, no
links leaving the folder, no devices, no setuid bits). It *skips* an unsafe member with
a warning and extracts the rest; for a model archive that is the wrong answer (a preset
that silently lost a file, from an archive that tried to write elsewhere), so the one
thing kept here is a check that refuses such an archive before anything is extracted.
"""

from __future__ import annotations

import os
import tarfile
import zipfile

import keras

CACHE_SUBDIR = "keras_cvdm_presets"
_COMPLETE = ".extracted"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def fetch_preset_archive(url: str, sha256: str | None, cache_dir: str | None = None) -> str:
    """Download (once), verify and extract a preset archive; return its extracted folder.

    Args:
        url: `https://` (or `http://`) URL of a `.tar.gz`, `.tgz`, `.tar` or `.zip` file.
        sha256: the archive's hex sha256 (64 digits), required.
        cache_dir: the cache root (default: `cache_root()`, i.e. `$KERAS_HOME` or `~/.keras`).

    Returns:
        The folder the archive was extracted to (the preset may sit one level below).

    Examples:
        >>> fetch_preset_archive("https://example.org/p.tar.gz", sha256=None)
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
    base = os.path.basename(url.split("?", 1)[0])
    suffix = next((s for s in ARCHIVE_SUFFIXES if base.endswith(s)), None)
    if suffix is None:
        raise ValueError(
            f"{url} is not a .tar.gz, .tgz, .tar or .zip preset archive; pack the folder "
            "written by keras_cvdm.save_preset into one of these and publish its sha256."
        )
    fname = sha256[:16] + suffix
    cache_dir = cache_root(cache_dir)
    # get_file falls back to /tmp/.keras when the cache folder is missing.
    os.makedirs(cache_dir, exist_ok=True)
    fetch = dict(
        fname=fname, origin=url, file_hash=sha256, hash_algorithm="sha256",
        cache_dir=cache_dir, cache_subdir=CACHE_SUBDIR,
    )
    try:
        archive = keras.utils.get_file(**fetch)
    except Exception as error:
        _remove_download(cache_dir, fname)
        raise ValueError(
            f"Downloading {url} failed or its sha256 did not match {sha256} ({error}). Check "
            "the URL and the checksum; nothing was extracted."
        ) from error
    # get_file extracts `<name>.<ext>` into `<name>_extracted` beside it, on every call; a
    # marker written after a complete extraction lets later calls reuse the folder.
    marker = os.path.join(os.path.dirname(archive), f"{sha256[:16]}_extracted", _COMPLETE)
    if os.path.isfile(marker):
        return os.path.dirname(marker)
    check_archive_members(archive)
    folder = keras.utils.get_file(**fetch, extract=True)
    with open(os.path.join(folder, _COMPLETE), "w") as f:
        f.write(sha256 + "\n")
    return folder


def check_archive_members(archive: str) -> None:
    """Refuse an archive with a member that would leave its folder, a link or a device.

    Args:
        archive: path of a `.tar(.gz)` or `.zip` file.

    Returns:
        None; raises `ValueError` naming the first unsafe member.

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
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [(info.filename, True) for info in zf.infolist()]
    else:
        with tarfile.open(archive) as tf:
            members = [(m.name, m.isfile() or m.isdir()) for m in tf.getmembers()]
    for name, regular in members:
        parts = name.replace("\\", "/").split("/")
        if os.path.isabs(name) or ".." in parts:
            raise ValueError(
                f"Refusing to extract the preset archive: member {name!r} would be written "
                "outside the extraction folder. The archive is unsafe; nothing was extracted."
            )
        if not regular:
            raise ValueError(
                f"Refusing to extract the preset archive: member {name!r} is a link or a "
                "special file. Nothing was extracted."
            )


def cache_root(cache_dir: str | None = None) -> str:
    """The cache folder: `cache_dir`, else `$KERAS_HOME`, else `~/.keras` (as Keras does).

    Keras reads `$KERAS_HOME` once, when it is imported; here it is read at each call, and
    the folder is always passed to `get_file` explicitly.

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


def _remove_download(cache_dir, fname):
    # get_file leaves a download whose hash failed in place.
    path = os.path.join(cache_dir, CACHE_SUBDIR, fname)
    if os.path.isfile(path):
        os.remove(path)
