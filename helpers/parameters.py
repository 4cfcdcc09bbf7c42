"""Notebook parameters for the runner: read from -f/-p, checked against the notebooks' `parameters` cells.

A parameter's type is its default's (`SEED = 42`: an int) or, where the default is None, the type declared with an
annotation (`DATA_LIMIT: int = None`). Everything is checked before the first notebook starts.
"""

from __future__ import annotations

from pathlib import Path

from .env import KitError


def notebook_parameters(notebooks: list[Path]) -> dict[str, dict[str, tuple[str, str | None]]]:
    """{notebook: {parameter: (its default, its declared type or None)}}, as papermill reads the `parameters` cell.

    A type is declared with an annotation, `DATA_LIMIT: int = None`; papermill's reader does not parse `int | None`.
    """
    import papermill as pm

    return {nb.stem: {k: (v["default"], None if v["inferred_type_name"] == "None" else v["inferred_type_name"])
                      for k, v in pm.inspect_notebook(str(nb)).items()} for nb in notebooks}


_DECLARED = {t.__name__: t for t in (int, float, str, bool, list, dict)}
_EXAMPLE = {int: "3", float: "0.5", str: "text", bool: "true", list: "[]", dict: "{}"}


def _expected_type(name: str, default: str, declared: str | None, where: str) -> tuple[type | None, bool]:
    """(the type a parameter takes, whether None is accepted): its declared type, else its literal default's type.

    An expression default such as default_run_dir() or str(KIT_ROOT / ...) is a path or a name: a str, or None.
    None with no declared type accepts any value (tests/test_runs.py keeps the course's parameters declared).
    """
    import ast

    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        value = ""  # an expression: a path or a name
    if declared is not None and declared not in _DECLARED:
        raise KitError(f"{where}: parameter {name} is declared as {declared!r}; the runner checks "
                       f"{', '.join(_DECLARED)}. Declare one of them in its parameters cell.")
    expected = _DECLARED[declared] if declared else None if value is None else type(value)
    return expected, value is None or expected is str


def _convert(name: str, value, default: str, declared: str | None, where: str):
    expected, nullable = _expected_type(name, default, declared, where)
    if expected is None or type(value) is expected or value is None and nullable:
        return value
    if expected is float and type(value) is int:
        return float(value)
    if expected is str and type(value) in (int, float):
        return str(value)
    source = f"declared in {where}: {name}: {declared} = {default}" if declared else \
        f"its default in {where} is {default}"
    example = _EXAMPLE[expected] if default == "None" or expected is str else default
    raise KitError(f"parameter {name}: expected {expected.__name__}{' or None' if nullable else ''} ({source}), got "
                   f"{value!r} ({type(value).__name__}). Fix: give a value of type {expected.__name__}, e.g. "
                   f"-p {name} {example}.")


def check_parameters(parameters: dict, notebooks: list[Path]) -> dict:
    """Check run parameters against the notebooks' `parameters` cells before anything runs.

    Returns:
        The parameters, each converted to its type (an int for a float parameter, a number for a string one).

    Raises:
        KitError: an unknown name (with a close match and every notebook's parameters), or a value of the
            wrong type (naming the parameter, its type and the notebook that defines it).
    """
    import difflib

    declared = notebook_parameters(notebooks)
    known: dict[str, tuple[str, str | None, str]] = {}
    for nb, params in declared.items():
        for name, (default, annotation) in params.items():
            known.setdefault(name, (default, annotation, nb))
    unknown = [name for name in parameters if name not in known]
    if unknown:
        hints = [f"{name!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(
            name, known, n=1)) else "") for name in unknown]
        listing = "; ".join(f"{nb}: {', '.join(params)}" for nb, params in declared.items())
        raise KitError(f"unknown parameter {', '.join(hints)}. The notebooks to run take: {listing}.")
    return {name: _convert(name, value, *known[name]) for name, value in parameters.items()}


def absolute_paths(parameters: dict) -> dict:
    """`*_PATH` parameters naming a file or folder relative to here, made absolute: notebooks run in notebooks/."""
    return {k: str(Path(v).resolve()) if k.endswith("_PATH") and isinstance(v, str) and v
            and not Path(v).is_absolute() and Path(v).exists() else v for k, v in parameters.items()}


def load_parameters(path: str | None, pairs: list[list[str]]) -> dict:
    """Notebook parameters from a YAML file (as papermill -f) and NAME VALUE pairs (as papermill -p)."""
    import yaml

    params = _read_parameters_file(path) if path else {}
    for key, value in pairs:
        try:
            params[key] = yaml.safe_load(value)  # "3" -> 3, "true" -> True, like papermill -p
        except yaml.YAMLError as err:
            raise KitError(f"-p {key} {value!r}: not a YAML value ({getattr(err, 'problem', None) or err}). "
                           f"For text, quote it twice: -p {key} \"'{value}'\".") from err
    return params


def _read_parameters_file(path: str) -> dict:
    """A YAML file of NAME: value lines; errors name the file and, for bad YAML, the line and column."""
    import yaml

    try:
        params = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise KitError(f"-f {path}: cannot read the parameters file ({getattr(err, 'strerror', None) or err}). "
                       "Give a YAML file of NAME: value lines, e.g. -f nightly.yaml.") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KitError(f"-f {path}{where}: not valid YAML ({getattr(err, 'problem', None) or err}). The file "
                       "holds NAME: value lines, e.g. SEED: 7.") from err
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise KitError(f"-f {path}: expected NAME: value lines (a YAML mapping), got a {type(params).__name__}. "
                       "Write one NAME: value per line, e.g. SEED: 7.")
    for name in params:
        if not isinstance(name, str):
            raise KitError(f"-f {path}: parameter names are text, got {name!r} ({type(name).__name__}). "
                           "Write NAME: value, e.g. SEED: 7.")
    return params


def given_once(name: str, option: str, given, parameters: dict, same):
    """The value of an option that can also be given as `-p NAME`: popped from parameters, refused if they differ."""
    if name not in parameters:
        return given
    value = parameters.pop(name)
    if not isinstance(value, str) or not value:
        raise KitError(f"-p {name} {value!r}: give a non-empty value, or leave -p {name} out and use {option}.")
    if given is not None and same(given) != same(value):
        raise KitError(f"{name} is given twice: {option} {given} and -p {name} {value}. Give it once ({option} "
                       f"or -p {name}); both mean the same thing.")
    return value
