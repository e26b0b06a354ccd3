"""One exception tree: every error class of the bridge is in bridge.errors and drawn in
its docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import bridge
import connectors
from bridge import errors

# Raised and caught inside its module (httptools' parser callback), never seen outside.
INTERNAL = {"bridge.receiving.servers._TooManyHeaders"}


def _modules() -> list[str]:
    names = []
    for package in (bridge, connectors):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name != "bridge.__main__":
                names.append(info.name)
    return names


def test_every_error_class_is_defined_in_bridge_errors() -> None:
    outside = []
    for name in _modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            if name != errors.__name__ and f"{name}.{cls_name}" not in INTERNAL:
                outside.append(f"{name}.{cls_name}")
    assert outside == []


def _drawn_at(doc: str, name: str) -> int:
    """Where the tree draws `name` (a line of the tree, not a mention in a comment)."""
    found = re.search(rf"(?:── |^){name}\b", doc, re.MULTILINE)
    assert found is not None, f"{name} is not drawn in bridge/errors.py's docstring"
    return found.start()


def test_every_error_class_descends_from_bridge_error_and_is_drawn() -> None:
    doc = errors.__doc__ or ""
    classes = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if cls.__module__ == errors.__name__
    ]
    assert classes
    for cls in classes:
        assert issubclass(cls, errors.BridgeError), cls
        _drawn_at(doc, cls.__name__)
        if cls is errors.BridgeError:
            continue
        for parent in cls.__mro__[1:]:
            if parent is errors.BridgeError:
                break
            # drawn under its parent: the parent's line comes first
            assert _drawn_at(doc, parent.__name__) < _drawn_at(doc, cls.__name__), cls
