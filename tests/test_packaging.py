"""Every package folder ships: pyproject.toml lists packages by hand (a package-dir mapping), so a new
folder left out of that list would be missing from an installed (non-editable) hpotui."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_folder_with_an_init_is_a_listed_package() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for name, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *relative)))
    assert found - listed == set(), "package folders missing from pyproject.toml's packages"
    assert listed - found == set(), "packages listed in pyproject.toml with no folder"
