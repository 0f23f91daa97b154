"""docs/deploy.md lists every setting imagegate reads, so the page stays true as settings are
added (its table is where an operator looks a variable up)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from imagegate.settings import Settings

DOCS = Path(__file__).parents[2] / "docs"
MAPPINGS = {"providers", "models", "routes"}  # YAML sections, documented field by field


def _variables(model: type[BaseModel], prefix: str = "IMAGEGATE_") -> Iterator[str]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _variables(annotation, f"{prefix}{name.upper()}__")
        elif not (prefix == "IMAGEGATE_" and name in MAPPINGS):
            yield prefix + name.upper()


def test_every_setting_is_in_the_deploy_guide_with_its_default() -> None:
    text = (DOCS / "deploy.md").read_text()
    rows = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("| `IMAGE")}
    variables = list(_variables(Settings))
    assert "IMAGEGATE_METRICS_BIND" in variables
    assert "IMAGEGATE_WEB__SESSION_SECRET" in variables
    missing = [name for name in variables if name not in rows]
    assert not missing, f"add these to docs/deploy.md's settings table: {missing}"
    assert all(row.count("|") >= 4 for row in rows.values())  # variable, default, meaning


def test_the_readme_links_the_deploy_guide() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert "(docs/deploy.md)" in readme
