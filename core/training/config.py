"""Training configs: plain Python files of ``NAME = value`` lines (``configs/*.py``), read by ``tools.train``."""
import os
import runpy

RENAMED_CONFIGS = {"upr_LARGE.py": "upr_llarge.py"}
"""Old config names that still work: ``configs/upr_LARGE.py`` was renamed because it and ``upr_large.py`` are one
name on case-insensitive file systems."""


def resolve_config(path):
    """Where the config ``path`` names lives: a renamed one's new name first (:data:`RENAMED_CONFIGS`; on a
    case-insensitive file system the old name would otherwise open another file), else ``path``; None if
    neither exists."""
    folder, name = os.path.split(path)
    if name in RENAMED_CONFIGS and os.path.isfile(os.path.join(folder, RENAMED_CONFIGS[name])):
        return os.path.join(folder, RENAMED_CONFIGS[name])
    return path if os.path.isfile(path) else None


def read_config(path):
    """The option values a config file sets ({name: value}, names starting with _ left out)."""
    return {k: v for k, v in runpy.run_path(path).items() if not k.startswith("_")}
