"""Sphinx configuration of tlsk's documentation site.

Build offline, warnings as errors, every gallery example executed::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TLSK_NO_DOWNLOAD", "1")
sys.path.insert(0, os.path.abspath(".."))

import tlsk  # noqa: E402

project = "tlsk"
author = "the tlsk developers"
copyright = "2026, the tlsk developers"  # noqa: A001 - Sphinx's name
release = tlsk.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# Anchors of Markdown headings, so that pages link to each other's sections.
myst_heading_anchors = 4
exclude_patterns = ["_build", "examples/README.rst", "**/GALLERY_HEADER.rst"]
templates_path = ["_templates"]

autosummary_generate = True
autodoc_default_options = {"members": False, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Offline: no inventory is fetched; cross-references to other projects stay
# plain text.
intersphinx_mapping = {}

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": True,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "abort_on_example_error": True,
    "reset_modules": ("matplotlib",),
    # "Examples using X" on each API page: the names the examples use.
    "doc_module": ("tlsk",),
    "backreferences_dir": "generated/backreferences",
}

html_theme = "pydata_sphinx_theme"
html_title = f"tlsk {release}"
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_static_path = []
