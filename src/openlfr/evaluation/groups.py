"""Evaluation datasets on disk and the demographic groups of their images.

A dataset is either a directory of identity folders (``DIR/<identity>/<image>``) or a flat
folder of images, each a different person (UTKFace). Groups come from a CSV
(``identity,<attr>,...`` or ``file,<attr>,...``) or from the built-in ``utkface`` file-name
parser (``<age>_<gender>_<race>_<time>.jpg...``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from openlfr.errors import InvalidInput
from openlfr.vision.imageio import IMAGE_SUFFIXES

UTKFACE = "utkface"
UTK_GENDER = {"0": "male", "1": "female"}
UTK_RACE = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Other"}
#: Age bands: (lowest age, label), ascending.
AGE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "0-17"), (18, "18-29"), (30, "30-44"), (45, "45-59"), (60, "60+"),
)


def _is_image(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class Dataset:
    """Images (paths relative to ``root``, sorted) and the identity of each."""

    root: Path
    images: list[str]
    identities: list[str]
    #: True when ``root`` holds identity folders; False for a flat folder (one person per image).
    has_identities: bool

    def by_identity(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, ident in enumerate(self.identities):
            out.setdefault(ident, []).append(i)
        return out


def scan_dataset(root: Path) -> Dataset:
    """Identity folders if ``root`` has sub-folders holding images, else a flat folder."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset directory {root}: no such directory")
    if not root.is_dir():
        raise FileNotFoundError(f"dataset {root}: not a directory")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images: list[str] = []
    identities: list[str] = []
    for folder in folders:
        for p in sorted(folder.iterdir()):
            if _is_image(p):
                images.append(f"{folder.name}/{p.name}")
                identities.append(folder.name)
    if images:
        return Dataset(root, images, identities, True)
    flat = sorted(p.name for p in root.iterdir() if _is_image(p))
    if not flat:
        raise InvalidInput(f"dataset {root}: no images found (expected identity folders or "
                            "a flat folder of images)")
    return Dataset(root, flat, list(flat), False)


def age_band(age: int) -> str:
    label = AGE_BANDS[0][1]
    for low, name in AGE_BANDS:
        if age >= low:
            label = name
    return label


def parse_utkface_name(name: str) -> dict[str, str] | None:
    """``{"age", "gender", "race"}`` (age as a band) from a UTKFace file name, or ``None`` when a
    field is missing or out of range."""
    base = Path(name).name
    parts = base.split("_")
    if len(parts) < 4:
        return None
    age, gender, race = parts[0], parts[1], parts[2]
    if (not age.isascii() or not age.isdigit() or len(age) > 3 or gender not in UTK_GENDER
            or race not in UTK_RACE):  # isdigit() alone lets "²" and 5,000 digits through
        return None
    years = int(age)
    if years > 130:
        return None
    return {"age": age_band(years), "gender": UTK_GENDER[gender], "race": UTK_RACE[race]}


@dataclass
class Groups:
    """Per attribute, the group of each image of a dataset (``None``: not labelled)."""

    attributes: list[str]
    #: attribute -> one group label (or None) per dataset image.
    labels: dict[str, list[str | None]]
    source: str
    #: Images whose names (utkface) or rows lacked a usable label.
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


def load_groups(spec: str, dataset: Dataset, attributes: Sequence[str] | None = None) -> Groups:
    """Groups of ``dataset``'s images from ``spec`` (``utkface`` or a CSV path).

    ``attributes`` selects columns (default: all). Raises ``ValueError`` for an unusable CSV or
    an unknown attribute, ``FileNotFoundError`` for a missing CSV.
    """
    if spec.strip().lower() == UTKFACE:
        groups = _utkface_groups(dataset)
    else:
        groups = _csv_groups(Path(spec), dataset)
    if attributes:
        unknown = [a for a in attributes if a not in groups.attributes]
        if unknown:
            raise InvalidInput(f"unknown attribute {unknown[0]!r}: {groups.source} has "
                                f"{', '.join(groups.attributes)}")
        groups.attributes = list(dict.fromkeys(attributes))
        groups.labels = {a: groups.labels[a] for a in groups.attributes}
    return groups


def _utkface_groups(dataset: Dataset) -> Groups:
    attrs = ["race", "gender", "age"]
    labels: dict[str, list[str | None]] = {a: [] for a in attrs}
    skipped = 0
    for rel in dataset.images:
        parsed = parse_utkface_name(rel)
        if parsed is None:
            skipped += 1
        for a in attrs:
            labels[a].append(None if parsed is None else parsed[a])
    notes = [f"{skipped} file names lack a UTKFace field and were skipped"] if skipped else []
    return Groups(attrs, labels, "utkface file names", skipped, notes)


def _csv_groups(path: Path, dataset: Dataset) -> Groups:
    if not path.exists():
        raise FileNotFoundError(f"--groups {path}: no such file (give a CSV or 'utkface')")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"--groups {path}: cannot read it as CSV ({exc})") from exc
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InvalidInput(f"--groups {path}: empty file")
    header = [c.strip() for c in rows[0]]
    key = header[0].lower() if header else ""
    if key not in ("identity", "file") or len(header) < 2:
        raise InvalidInput(f"--groups {path}: the header must be 'identity,<attribute>,...' or "
                            f"'file,<attribute>,...', got {','.join(header)!r}")
    if key == "identity" and not dataset.has_identities:
        raise InvalidInput(f"--groups {path}: keyed by identity, but the dataset is a flat folder "
                            "without identity folders (use a 'file' column)")
    attrs = header[1:]
    if any(not a for a in attrs) or len(set(attrs)) != len(attrs):
        raise InvalidInput(f"--groups {path}: attribute names must be non-empty and distinct")
    table: dict[str, list[str]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InvalidInput(f"--groups {path}, line {line}: {len(row)} fields, expected "
                                f"{len(header)}")
        name = row[0].strip().replace("\\", "/")
        if name in table:
            raise InvalidInput(f"--groups {path}, line {line}: {name!r} appears twice")
        table[name] = [c.strip() for c in row[1:]]
    keys = dataset.identities if key == "identity" else dataset.images
    labels: dict[str, list[str | None]] = {a: [] for a in attrs}
    missing = 0
    for k in keys:
        values = table.get(k)
        missing += values is None
        for j, a in enumerate(attrs):
            v = values[j] if values is not None else ""
            labels[a].append(v or None)
    if missing == len(keys):
        raise InvalidInput(f"--groups {path}: no {key} in it matches the dataset "
                            f"(first dataset {key}: {keys[0]!r})")
    notes = [f"{missing} images have no row in {path.name}"] if missing else []
    return Groups(attrs, labels, str(path), missing, notes)
