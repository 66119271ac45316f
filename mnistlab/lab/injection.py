"""What papermill injects into a Python notebook: assignments of literals to names, never code.

Papermill writes each parameter as ``f"{name} = {value}"`` into the injected cell, which runs before
any cell of the notebook: a name taken from a params file (``-f``), a YAML string (``-y``, ``-b``) or
the command line (``-p``, ``-r``) is pasted unescaped, so a key such as
``"x = 0\\nimport os; os.system('...')\\ny"`` is code. Values of the common types are escaped, but
anything else YAML can make (``!!binary``, ``!!set``) is pasted as ``f'"{value}"'``, also unescaped.

``SafePythonTranslator`` replaces papermill's Python translator: a name that is not a Python
identifier (or is a keyword) is refused before any kernel starts, with a message naming it; a value
is written as papermill writes it when it is None, a bool, an int, a float, a str, a list or a dict of
those, and any other value as the escaped string of it; a value of more than ``MAX_NODES`` items or
nested deeper than ``MAX_DEPTH`` (YAML aliases make billions from a few hundred bytes) is refused.

It is registered when papermill is imported: this module is an entry point of the group
``papermill.engine`` (``pyproject.toml``), which papermill loads while it imports, so the plain
``papermill`` command and papermill's API both use it for every Python kernel in this environment.
Registered under the name ``mnistlab``, this module is also an engine (``--engine mnistlab``): papermill's
own nbclient engine under another name. The entry point names the module, not an object in it, so
importing this module first (before papermill) works too.
"""

from __future__ import annotations

import keyword
from typing import Any

import click
import papermill.translators as _translators
from papermill.exceptions import PapermillException

MAX_NODES = 100_000  # values, list items and dict entries of all parameters together
MAX_DEPTH = 32
_PLAIN = (type(None), bool, int, float, str)


class UnsafeParameter(PapermillException, click.ClickException):
    """A parameter papermill would have written into the notebook as code; nothing has run.

    A ``click.ClickException``: the papermill command prints ``Error: <message>`` and exits with status 2,
    without a traceback."""

    exit_code = 2


def check_name(name: Any) -> None:
    """Refuse a parameter name that papermill's ``name = value`` would turn into code or a syntax error."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise UnsafeParameter(
            f"parameter name {_short(name)} is not a Python identifier (letters, digits and _, not starting with a "
            "digit, not a keyword): papermill would write it into the notebook as code. Parameter names are the "
            "keys of a params file (-f) or YAML string (-y, -b) and the names given to -p and -r; rename or remove "
            "it. Nothing was executed.")


class SafePythonTranslator(_translators.PythonTranslator):
    """Papermill's Python translator, refusing names that are not identifiers and escaping every value."""

    @classmethod
    def codify(cls, parameters, comment="Parameters"):
        nodes = 0
        for name, value in parameters.items():
            check_name(name)
            nodes += _count(name, value, MAX_NODES - nodes)
        return super().codify(parameters, comment)

    @classmethod
    def assign(cls, name, str_val):
        check_name(name)  # again here: codify's check is the one that runs first, this one cannot be bypassed
        return super().assign(name, str_val)

    @classmethod
    def translate(cls, val):
        if isinstance(val, (*_PLAIN, list, dict)):
            return super().translate(val)
        return cls.translate_escaped_str(str(val))  # papermill pastes str(val) between quotes unescaped

    @classmethod
    def translate_dict(cls, val):
        entries = ", ".join(f"{cls.translate_escaped_str(str(key))}: {cls.translate(item)}"
                            for key, item in val.items())
        return f"{{{entries}}}"


def _count(name: str, value: Any, budget: int, depth: int = 0) -> int:
    """How many values ``value`` holds, counting each visit (aliases are shared, not copied, by YAML)."""
    if depth > MAX_DEPTH:
        raise UnsafeParameter(f"parameter {name!r} is nested more than {MAX_DEPTH} levels deep; nothing was executed")
    if budget <= 0:
        raise UnsafeParameter(f"parameter {name!r} holds more than {MAX_NODES} values (YAML aliases expand a few "
                              "hundred bytes into billions); nothing was executed")
    used = 1
    if isinstance(value, dict):
        for item in value.values():
            used += _count(name, item, budget - used, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            used += _count(name, item, budget - used, depth + 1)
    return used


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"


def register() -> None:
    """Make ``SafePythonTranslator`` the translator of every Python kernel papermill knows (idempotent)."""
    for language in ("python", "python3", "pysparkkernel"):
        _translators.papermill_translators.register(language, SafePythonTranslator)


# As an engine (``--engine mnistlab``): papermill's nbclient engine. Looked up when called, because papermill
# may load this module while its own engines module is still being imported.
def execute_notebook(nb, kernel_name, **kwargs):
    from papermill.engines import NBClientEngine

    return NBClientEngine.execute_notebook(nb, kernel_name, **kwargs)


def nb_kernel_name(nb, name=None):
    from papermill.utils import nb_kernel_name as default

    return default(nb, name)


def nb_language(nb, language=None):
    from papermill.utils import nb_language as default

    return default(nb, language)


register()
