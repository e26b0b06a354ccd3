"""docs/configuration.md documents every config key, and only keys that exist.

The keys come from the code, not from a list kept here: every `Section.only(...)` call
in the config modules names the keys one mapping accepts. The test parses a config
that reaches every such call while `Section.only` is instrumented, which yields each
call's dotted path (`connectors.<name>.rules[].credit.asset`). An `ast` scan of the
package finds every `.only(` call site, so a new section that the config below does
not reach fails the test instead of slipping past it.

The reference lists keys in tables whose first column is the dotted key in backticks:

    | Key | Type | Default | Example | Meaning |
    | `credyt.timeout` | duration | `10s` | `5s` | ... |
"""

from __future__ import annotations

import ast
import os
import re
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.config import schema as config_module
from bridge.config import yamlsource
from bridge.config.loading import load_config, parse_config
from bridge.config.schema import Config, Expiry
from bridge.config.yamlsource import parse_duration
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"
PRODUCTION = ROOT / "docs" / "production.md"
PACKAGES = ("bridge", "connectors")
NAME = "name0"  # a user-chosen name in the config below (shown as <name> in the docs)

# Reaches every section the parser reads: a connector, a credit rule and a reverse rule
# (the parser reads `credit:` and `reverse:` only when a rule has them).
REACHING_CONFIG = f"""
database: bridge.db
credyt: {{api_url: "https://api.credyt.ai", api_key: key_test}}
limits: {{{NAME}: {{max_adjustment: "1"}}}}
connectors:
  {NAME}:
    type: stripe
    secrets: [whsec_test_abcdefghijklmnopqrstuvwx]
    credyt: {{account: acc_docs}}
    rules:
      - name: credit-rule
        on: invoice.paid
        when: {{billing_reason: subscription_cycle}}
        credit: {{amount: paid}}
      - name: reverse-rule
        on: invoice.paid
        reverse: {{}}
alerts:
  targets: [{{type: slack, url: "https://hooks.example.com/x"}}]
  on: {{adjustment_dead: true}}
"""

# Only what is required, so every other key has its default.
DEFAULTS_CONFIG = f"""
credyt: {{api_key: key_test}}
connectors:
  {NAME}:
    type: stripe
    secrets: [whsec_test_abcdefghijklmnopqrstuvwx]
    rules:
      - {{name: credit-rule, on: invoice.paid, credit: {{}}}}
      - {{name: reverse-rule, on: invoice.paid, reverse: {{}}}}
alerts: {{targets: [{{type: webhook, url: "https://hooks.example.com/x"}}]}}
"""

ENV = {
    "CREDYT_API_KEY": "key_test_docs",
    "STRIPE_WEBHOOK_SECRET": "whsec_docs_abcdefghijklmnopqrstuvwx",
    "STRIPE_EU_WEBHOOK_SECRET": "whsec_docs_eu_abcdefghijklmnopqrstuvwx",
    "STRIPE_WEBHOOK_SECRET_NEXT": "whsec_docs_next_abcdefghijklmnopqrstuvwx",
    "PADDLE_WEBHOOK_SECRET": "pdl_ntfset_docs_abcdefghijklmnopqrstuvwx",
    "BRIDGE_ADMIN_TOKEN": "a-long-admin-token-0123456789",
    "STRIPE_API_KEY": "rk_test_docs",
}


def dotted_key(path: tuple[str | int, ...], key: str) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += "[]"
        else:
            name = "<name>" if part == NAME else part
            text += f".{name}" if text else name
    return f"{text}.{key}" if text else key


def only_call_sites() -> set[tuple[str, int]]:
    """(file, line) of every `x.only("a", "b", ...)` call in the package."""
    sites = set()
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "only"
                    and node.args
                    and all(
                        isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args
                    )
                ):
                    sites.add((os.path.realpath(file), node.lineno))
    return sites


def keys_from_code(text: str) -> tuple[set[str], set[tuple[str, int]]]:
    """Every dotted key the config parser accepts, and the `.only(` call sites reached."""
    keys: set[str] = set()
    reached: set[tuple[str, int]] = set()
    original = yamlsource.Section.only

    def recording(self: yamlsource.Section, *names: str) -> None:
        caller = sys._getframe(1)
        reached.add((os.path.realpath(caller.f_code.co_filename), caller.f_lineno))
        keys.update(dotted_key(self.path, name) for name in names)
        original(self, *names)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(yamlsource.Section, "only", recording)
        try:
            parse_config(text, "reaching.yaml", ENV)
        except ConfigError:
            pass  # a key the config above gets wrong still had its mapping read
    return keys, reached


def documented_rows() -> Iterator[tuple[int, list[str]]]:
    for number, line in enumerate(REFERENCE.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("| `"):
            # Cells split on `|`, but not on `\|` (an escaped bar inside a cell).
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            yield number, cells


def documented_keys() -> set[str]:
    keys = set()
    for _, cells in documented_rows():
        match = re.fullmatch(r"`([^`]+)`", cells[0])
        if match:
            keys.add(match.group(1))
    return keys


def test_the_config_above_reaches_every_section_the_parser_reads() -> None:
    _, reached = keys_from_code(REACHING_CONFIG)
    missed = only_call_sites() - reached
    assert not missed, (
        "these Section.only(...) calls were not reached; extend REACHING_CONFIG in "
        f"tests/acceptance/test_docs.py so their keys are checked too: {sorted(missed)}"
    )


def test_every_config_key_is_documented_and_every_documented_key_exists() -> None:
    in_code, _ = keys_from_code(REACHING_CONFIG)
    documented = documented_keys()
    missing = sorted(in_code - documented)
    unknown = sorted(documented - in_code)
    assert not missing, f"docs/configuration.md lacks a row for: {missing}"
    assert not unknown, f"docs/configuration.md documents keys the config does not have: {unknown}"


def test_every_row_gives_a_type_a_default_an_example_and_a_meaning() -> None:
    rows = list(documented_rows())
    assert rows, "no key tables in docs/configuration.md"
    for number, cells in rows:
        assert len(cells) == 5, f"configuration.md:{number}: Key | Type | Default | Example | ..."
        key, kind, default, example, meaning = cells
        assert kind and default and example and meaning, f"configuration.md:{number}: {key}"


def parsed_default(key: str, config: Config) -> object:
    """The value the parser gives `key` when the config leaves it out."""
    value: object = config
    for part in key.replace("<name>", NAME).split("."):
        if isinstance(value, dict):
            value = value[part]
        elif part.endswith("[]"):  # rules: the credit rule, or the reverse rule for reverse.*
            value = getattr(value, part[:-2])
        elif isinstance(value, tuple):
            value = getattr(value[1] if part == "reverse" else value[0], part)
        else:
            value = getattr(value, part)
    return value


def same_value(value: object, text: str) -> bool | None:
    """Does the documented default `text` say `value`? None: not comparable."""
    if value is None:
        return text == "paid" or None  # credit.amount: None is the amount paid
    if isinstance(value, bool):
        return text == str(value).lower()
    if isinstance(value, float):
        return parse_duration(text) == value
    if isinstance(value, int):
        return int(text) == value
    if isinstance(value, Decimal):
        return Decimal(text) == value
    if isinstance(value, Expiry):
        return value.describe() == text
    if isinstance(value, str):
        return value == text
    return None  # a section, a list or a map


def test_documented_defaults_are_the_code_s_defaults() -> None:
    defaults = parse_config(DEFAULTS_CONFIG, "defaults.yaml", ENV)
    compared = 0
    for number, cells in documented_rows():
        key, default = cells[0].strip("`"), cells[2]
        shown = re.match(r"`([^`]+)`", default)
        if not shown:
            continue  # "required", "none", "any", "the payment currency"...
        verdict = same_value(parsed_default(key, defaults), shown.group(1))
        if verdict is not None:
            assert verdict, f"configuration.md:{number}: {key} defaults to {default}, not so"
            compared += 1
    assert compared >= 25


def test_each_documented_key_appears_once() -> None:
    keys = [cells[0] for _, cells in documented_rows()]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    assert not repeated, repeated


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def test_the_complete_example_in_the_reference_is_a_valid_config() -> None:
    complete = [block for block in yaml_blocks(REFERENCE) if block.startswith("# complete")]
    assert len(complete) == 1, "one ```yaml block starting with '# complete example'"
    config = parse_config(complete[0], "configuration.md", ENV)
    assert config.connectors


@pytest.mark.parametrize("document", [REFERENCE, PRODUCTION], ids=lambda p: p.name)
def test_config_snippets_in_the_docs_parse(document: Path) -> None:
    """Every yaml snippet that is a whole config (it has `connectors:`) is valid."""
    for block in yaml_blocks(document):
        if block.startswith("connectors:") or "\nconnectors:" in block:
            if "credyt:" not in block:
                block = "credyt: {api_key: key_test}\n" + block
            parse_config(block, document.name, ENV)


def test_the_example_config_is_the_one_in_the_package() -> None:
    shipped = Path(config_module.__file__).parent / "config.example.yaml"
    assert (ROOT / "config.example.yaml").resolve() == shipped.resolve()
    assert load_config(shipped, ENV).connectors.keys() >= {"stripe", "paddle"}


def test_the_reference_links_resolve() -> None:
    for document in (REFERENCE, PRODUCTION, ROOT / "README.md"):
        text = document.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (document.parent / target).exists(), f"{document.name}: broken link {target}"
