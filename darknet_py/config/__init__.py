"""Reading Darknet cfg text (pure data, no torch)."""
from .reader import CfgDocument, Option, Section, parse_cfg_text, read_cfg

__all__ = ["CfgDocument", "Option", "Section", "parse_cfg_text", "read_cfg"]
