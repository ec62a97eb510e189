"""Former home of the ``.names`` and ``.data`` readers, now :mod:`darknet_py.config`; the old names
stay importable from here."""

from .config.data import read_data_config, resolve_data_path
from .config.names import default_names, read_names


def read_data_file(path) -> dict[str, str]:
    """A Darknet ``.data`` file as {key: value} (:func:`darknet_py.config.read_data_config`)."""
    return read_data_config(path).as_dict()


__all__ = ["default_names", "read_data_file", "read_names", "resolve_data_path"]
