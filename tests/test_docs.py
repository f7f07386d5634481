"""The documentation site's sources: every public name and example in place.

The site itself is built by the README's test command (after pytest), with
warnings as errors and every example run.
"""

import re
from pathlib import Path

import tlsk

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_api_page_lists_every_public_name():
    listed = set(re.findall(r"^   (\w+)$", (DOCS / "api.rst").read_text(), re.M))
    assert listed == set(tlsk.__all__) - {"__version__"}


def test_each_example_is_a_gallery_script_with_a_title():
    examples = sorted((DOCS / "examples").glob("*.py"))
    assert len(examples) >= 5
    for example in examples:
        assert example.name.startswith("plot_"), example
        docstring = example.read_text().split('"""')[1].strip().splitlines()
        assert set(docstring[1]) == {"="} and len(docstring[1]) >= len(docstring[0])


def test_the_readme_test_command_is_what_ci_runs():
    readme = (DOCS.parent / "README.md").read_text()
    ci = (DOCS.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in readme
