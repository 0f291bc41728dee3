"""Helpers shared by several test modules (fake tools, fake brains, tiny models); fixtures live in
``tests/conftest.py``. Test modules import these by name, e.g. ``from helpers.agent import FAKES``."""
