"""The mapping engine: declarative YAML mappings compiled to one Python function each."""

from .engine import CompiledMapping, MappingSet, compile_mapping, load_mappings, mapping_files

__all__ = ["CompiledMapping", "MappingSet", "compile_mapping", "load_mappings", "mapping_files"]
