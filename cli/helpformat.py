"""`--help` that shows each option's default, as the README gives them.

`Parser` is the parser class of `bulkhead` and `bulkhead-lab`; argparse makes every
sub-command's parser of the same class, so one class covers them all. An option's default is
added to its help unless the help already says it or there is no default worth showing
(None, False, empty).
"""

from __future__ import annotations

import argparse
from typing import Any


class DefaultsFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or not _shown(action.default) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".strip()


def _shown(default: Any) -> bool:
    return default not in (None, False, "", [], argparse.SUPPRESS)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        # An option without help text would have no line to carry its default.
        if kwargs.get("help") is None and _shown(kwargs.get("default")) \
                and any(str(a).startswith("-") for a in args):
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)
