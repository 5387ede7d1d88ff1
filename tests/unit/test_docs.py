"""The docs stay true: links resolve, the configuration table matches the settings, the README is
a front page, the fault table lists every scenario of the fault suite."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from orchestrator.config import PROJECT_ROOT, Settings

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]+`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
ABSOLUTE = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def links(path: Path) -> list[tuple[int, str]]:
    """Every link target in the page's prose, with its line: not in code blocks, nor in inline
    code (which may span lines)."""
    numbered = dict(prose_lines(path.read_text(encoding="utf-8")))
    last = max(numbered, default=0)
    prose = "\n".join(numbered.get(n, "") for n in range(1, last + 1))
    prose = INLINE_CODE.sub(lambda code: "\n" * code.group().count("\n"), prose)
    return [
        (prose.count("\n", 0, match.start()) + 1, match.group(1)) for match in LINK.finditer(prose)
    ]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub computes it: the text (inline markup's characters dropped
    with the rest of the punctuation), lowercased, spaces to ``-``, every character that is not
    a letter, digit, space, ``-`` or ``_`` dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings; repeated headings get ``-1``, ``-2``… as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(path: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """What is wrong with each relative link of the page, one line per link (none: empty)."""
    problems = []
    for number, target in links(path):
        if ABSOLUTE.match(target):
            continue  # http(s), mailto: not checked
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where}: no such file or directory")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: no heading with anchor #{anchor}")
        elif anchor and resolved.suffix != ".md":
            problems.append(f"{where}: an anchor into a file that is not Markdown")
    return problems


# --------------------------------------------------------------------------------------------
# Links


@pytest.mark.parametrize("path", pages(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_relative_link_resolves_to_a_file_and_heading(path: Path) -> None:
    assert broken_links(path) == []


def test_slug_follows_github() -> None:
    assert slug("Large signals (5,000 accounts and more)") == "large-signals-5000-accounts-and-more"
    assert slug("Round trip: `make bench-fix`") == "round-trip-make-bench-fix"
    assert slug("What the server keeps, whatever the UI shows") == (
        "what-the-server-keeps-whatever-the-ui-shows"
    )
    assert slug("TEO_X and [a link](x.md)") == "teo_x-and-a-link"


def test_a_broken_link_and_a_missing_anchor_are_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-section) [self](#page) [gone](missing.md)\n"
        "[bad anchor](other.md#no-section) [web](https://example.com/x)\n"
        "```\n[in code](missing-too.md)\n```\n`[inline](missing-three.md)`\n"
        "[dir](sub/) [no dir](nosub/)\n"
        "`code that [spans](missing-five.md)\ntwo lines` and [a link that\n"
        "spans two](missing-six.md)\n",
        encoding="utf-8",
    )
    assert [target for _, target in links(page)] == [
        "other.md#a-section",
        "#page",
        "missing.md",
        "other.md#no-section",
        "https://example.com/x",
        "sub/",
        "nosub/",
        "missing-six.md",
    ]
    assert broken_links(page, root=tmp_path) == [
        "page.md:3: missing.md: no such file or directory",
        "page.md:4: other.md#no-section: no heading with anchor #no-section",
        "page.md:9: nosub/: no such file or directory",
        "page.md:11: missing-six.md: no such file or directory",
    ]


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for _, target in links(README)
        if not ABSOLUTE.match(target)
    }
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert unlinked == []


# --------------------------------------------------------------------------------------------
# The configuration table


def render_default(value: object) -> str:
    """A default as the configuration table writes it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SecretStr):
        return render_default(value.get_secret_value())
    if isinstance(value, Path):
        return (
            value.relative_to(PROJECT_ROOT).as_posix()
            if value.is_relative_to(PROJECT_ROOT)
            else str(value)
        )
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, Decimal | int | float):
        return str(value)
    return str(value).replace(f"{PROJECT_ROOT.as_posix()}/", "")


def configuration_table(text: str) -> dict[str, str]:
    """Variable → default cell (without backticks), from the table headed
    ``| variable | default | meaning |``. A row naming several variables joined by `` / `` gives
    each its own default: the cell's values in the same order, or the one value for all."""
    rows: dict[str, str] = {}
    in_table = False
    for _, line in prose_lines(text):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        if [c.lower() for c in cells[:3]] == ["variable", "default", "meaning"] and len(cells) == 3:
            in_table = True
            continue
        if not in_table or set(cells[0]) <= set("-: "):
            continue
        names = [n.strip().strip("`") for n in cells[0].split(" / ")]
        defaults = [d.strip().strip("`") for d in cells[1].split(" / ")]
        if len(defaults) == 1:
            defaults = defaults * len(names)
        assert len(defaults) == len(names), f"{cells[0]}: {len(names)} names, defaults {cells[1]}"
        for name, default in zip(names, defaults, strict=True):
            assert name not in rows, f"{name} has two rows"
            rows[name] = default
    return rows


def settings_defaults() -> dict[str, str]:
    return {
        f"TEO_{name.upper()}": render_default(field.get_default(call_default_factory=True))
        for name, field in Settings.model_fields.items()
    }


def test_the_configuration_table_lists_exactly_the_settings() -> None:
    table = configuration_table(CONFIGURATION.read_text(encoding="utf-8"))
    expected = settings_defaults()

    assert sorted(set(expected) - set(table)) == [], "settings without a row"
    assert sorted(set(table) - set(expected)) == [], "rows without a setting"


def test_the_configuration_table_shows_each_default() -> None:
    table = configuration_table(CONFIGURATION.read_text(encoding="utf-8"))
    wrong = {
        name: (table[name], default)
        for name, default in settings_defaults().items()
        if name in table and table[name] != default
    }
    assert wrong == {}, "variable: (table says, code says)"


def test_defaults_render_as_the_table_writes_them() -> None:
    assert render_default(Decimal(1)) == "1"
    assert render_default(Decimal("0.10")) == "0.10"
    assert render_default(None) == "unset"
    assert render_default(False) == "false"
    assert render_default(0.2) == "0.2"
    assert render_default({}) == "{}"
    assert render_default(PROJECT_ROOT / ".run" / "archive") == ".run/archive"
    assert render_default(f"sqlite:///{PROJECT_ROOT / '.run' / 'x.db'}") == "sqlite:///.run/x.db"


def test_a_row_of_related_variables_gives_each_its_default() -> None:
    text = (
        "| variable | default | meaning |\n|---|---|---|\n"
        "| `TEO_A` / `TEO_B` | `1` / `30` | bounds |\n"
        "| `TEO_C` / `TEO_D` / `TEO_E` | `unset` | three |\n\n"
        "| variable | read by | default | meaning |\n|---|---|---|---|\n"
        "| `TEO_OTHER` | x | y | z |\n"
    )
    assert configuration_table(text) == {
        "TEO_A": "1",
        "TEO_B": "30",
        "TEO_C": "unset",
        "TEO_D": "unset",
        "TEO_E": "unset",
    }


# --------------------------------------------------------------------------------------------
# The README


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES


def test_the_readme_keeps_the_two_command_quick_start() -> None:
    text = README.read_text(encoding="utf-8")
    assert "\nmake demo " in text
    assert "\nmake test " in text


FAULT_SUITE = PROJECT_ROOT / "tests" / "faults" / "test_faults.py"
TESTING = DOCS / "testing.md"


def fault_scenarios() -> set[str]:
    """Every scenario name the fault suite prints in its table, the step of each kill point
    spelled out (read from the sources: importing them starts nothing, but loads the worker)."""
    steps = (FAULT_SUITE.parent / "worker_process.py").read_text(encoding="utf-8")
    block = steps.split("\nKILL_POINTS = {", 1)[1].split("\n}", 1)[0]
    kill_points = re.findall(r'^    "(\w+)":', block, re.MULTILINE)
    source = FAULT_SUITE.read_text(encoding="utf-8")
    names = set(re.findall(r'check\(\s*run,\s*f?"([^"]+)"', source))
    names |= set(re.findall(r'scenario="([^"]+)"', source))
    return {
        expanded
        for name in names
        for expanded in (
            [name.replace("{point}", point) for point in kill_points]
            if "{point}" in name
            else [name]
        )
    }


def test_the_fault_table_in_testing_md_lists_every_scenario_the_suite_runs() -> None:
    table = TESTING.read_text(encoding="utf-8").split("## Fault suite", 1)[1]
    documented = {
        line.split("|")[1].strip().replace("`", "")
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| scenario")
    }
    scenarios = fault_scenarios()
    assert len(scenarios) >= 15  # the parse found them (a rename would empty it)
    assert sorted(scenarios - documented) == []
