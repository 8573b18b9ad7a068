"""The reference must stay true: every environment variable the settings read is in
the configuration table of docs/configuration.md."""

from __future__ import annotations

import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def test_every_setting_read_from_the_environment_is_documented() -> None:
    sources = "\n".join(path.read_text() for path in (BASE_DIR / "backserv_site").glob("*.py"))
    kinds = "str|bool|int|float|list|secret|rate|seconds_by_type|auto_bool|auto_int"
    reader = rf"""env_(?:{kinds})\(\s*["']([A-Z0-9_]+)["']"""
    names = set(re.findall(reader, sources))
    reference = (BASE_DIR / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)`", reference, flags=re.MULTILINE))
    assert names, "no env_* calls found: the pattern is out of date"
    assert sorted(names - documented) == []


def test_the_front_door_links_only_to_documents_that_exist() -> None:
    readme = (BASE_DIR / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+\.md)\)", readme)
    assert links, "README links to no reference document"
    assert [link for link in links if not (BASE_DIR / link).is_file()] == []
