"""Reading Darknet's text files: pure data, line numbers kept, no torch.

- :mod:`.reader`: ``.cfg`` -> line-numbered sections;
- :mod:`.data`: ``.data`` files; :mod:`.names`: ``.names`` files; :mod:`.lists`: image lists;
- :mod:`.text`: the one way these files are read (BOM, UTF-8, line endings).
"""
from .data import DataConfig, read_data_config, resolve_data_path
from .lists import ListedImage, read_image_list
from .names import default_names, read_names
from .reader import CfgDocument, Option, Section, parse_cfg_text, read_cfg

__all__ = ["CfgDocument", "DataConfig", "ListedImage", "Option", "Section", "default_names", "parse_cfg_text",
           "read_cfg", "read_data_config", "read_image_list", "read_names", "resolve_data_path"]
