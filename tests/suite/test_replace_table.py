"""A suite's `replace` with block settings: the string form and the table form name the same run."""

from __future__ import annotations

from pathlib import Path

import pytest

from strabench.errors import ConfigError
from strabench.suite.config import load_suite

from .fakes import BASE_SUITE, write_suite

GOOD = BASE_SUITE.format(name="t", seeds="[0]", epochs=1)
STRA = 'name = "stra"\nmodel = "resnet50_stra"'


def variant(body: str) -> str:
    return GOOD.replace(STRA, f'name = "stra"\nmodel = "resnet50"\n{body}')


def test_string_and_table_forms_are_the_same_canonical_block(tmp_path: Path) -> None:
    string = load_suite(write_suite(tmp_path, variant('replace = { "layer4.*.conv2" = "stra( kernel_size = 5, groups=4 )" }')))
    table = load_suite(write_suite(tmp_path, variant(
        '[variants.replace."layer4.*.conv2"]\nblock = "stra"\ngroups = 4\nkernel_size = 5')))
    assert dict(string.variants[1].replace) == {"layer4.*.conv2": "stra(groups=4, kernel_size=5)"}
    assert dict(table.variants[1].replace) == dict(string.variants[1].replace)
    plain = load_suite(write_suite(tmp_path, variant('replace = { "layer4.*.conv2" = "stra" }')))
    assert dict(plain.variants[1].replace) == {"layer4.*.conv2": "stra"}  # no settings: the text it always had


@pytest.mark.parametrize("body,message", [
    ('[variants.replace."layer4.*.conv2"]\ngroups = 4',
     "variants[1].replace.'layer4.*.conv2'.block: missing"),
    ('[variants.replace."layer4.*.conv2"]\nblock = "stra"\ngroups = { a = 1 }',
     "variants[1].replace.'layer4.*.conv2'.groups: expected a number, boolean, string or a tuple of them"),
    ('[variants.replace."layer4.*.conv2"]\nblock = "stra(groups=4)"',
     "variants[1].replace.'layer4.*.conv2'.block: expected a block name such as \"stra\""),
    ('[variants.replace."layer4.*.conv2"]\nblock = "stra"\nmodes = 3',
     "variants[1].replace.'layer4.*.conv2': block 'stra(modes=3)' has no setting 'modes'"),
    ('replace = { "layer4.*.conv2" = "stra(groups=open)" }',
     "variants[1].replace.'layer4.*.conv2': block 'stra(groups=open)': setting 'groups' must be a literal"),
])
def test_table_form_errors_name_the_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_suite(write_suite(tmp_path, variant(body)))
    text = str(info.value)
    assert message in text and "\n" not in text and str(tmp_path) in text
