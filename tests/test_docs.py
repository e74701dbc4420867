"""The documentation: the generated settings page is current, every relative link in the README,
CONTRIBUTING.md and the pages under docs/ points at a file that exists, and the version the
package reports is the one pyproject.toml and the CHANGELOG's latest release say."""

import re
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.cli.settings_doc import settings_doc

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_settings_page_is_the_generated_one():
    assert (ROOT / "docs" / "reference" / "settings.md").read_text() == settings_doc(), (
        "docs/reference/settings.md is out of date: python -m edgenas.cli.settings_doc > docs/reference/settings.md"
    )


def test_every_setting_is_on_the_settings_page():
    import dataclasses

    from edgenas.settings.pipeline import Pipeline, setting_sections

    page = settings_doc()
    for name in setting_sections():
        for f in dataclasses.fields(getattr(Pipeline(), name)):
            assert f"| `{f.name}` |" in page, (name, f.name)


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not prose
    return [m for m in LINK.findall(text) if not re.match(r"[a-z]+:", m)]  # relative links only


def test_no_relative_link_is_broken():
    broken = []
    for page in PAGES:
        for link in _links(page):
            target, _, anchor = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link}")
            elif anchor and path.suffix == ".md":
                slugs = {
                    re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                    for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)
                }
                if anchor not in slugs:
                    broken.append(f"{page.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, broken


def test_a_broken_link_is_noticed(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) and [gone](missing.md)\n```\n[in code](nowhere.md)\n```\n")
    assert _links(page) == ["page.md", "missing.md"]


def test_the_version_is_the_released_one():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"edgenas {version}"
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0][0] == version, releases[:2]
