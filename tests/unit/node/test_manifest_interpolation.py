"""Compose interpolation, checked against the Compose specification's own examples, and the
`.env` file format."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import consensus  # noqa: F401
from node.manifests import ManifestError, Origin, load_manifest
from node.manifests.interpolation import Interpolator, parse_env_file

# SET is set, EMPTY is set to "", UNSET is not set.
VARS = {"SET": "value", "EMPTY": "", "FOO": "foo"}


@pytest.mark.parametrize(
    "text, expected",
    [
        # The specification's list of braced expressions.
        ("${SET}", "value"),
        ("$SET", "value"),
        ("${UNSET}", ""),
        ("${SET:-default}", "value"),
        ("${EMPTY:-default}", "default"),
        ("${UNSET:-default}", "default"),
        ("${SET-default}", "value"),
        ("${EMPTY-default}", ""),
        ("${UNSET-default}", "default"),
        ("${SET:+replacement}", "replacement"),
        ("${EMPTY:+replacement}", ""),
        ("${UNSET:+replacement}", ""),
        ("${SET+replacement}", "replacement"),
        ("${EMPTY+replacement}", "replacement"),
        ("${UNSET+replacement}", ""),
        ("${SET:?error}", "value"),
        ("${EMPTY?error}", ""),
        # Its nesting examples: ${VARIABLE:-${FOO}}, ${VARIABLE?$FOO}, ${VARIABLE:-${FOO:-default}}.
        ("${UNSET:-${FOO}}", "foo"),
        ("${SET?$FOO}", "value"),
        ("${UNSET:-${UNSET2:-default}}", "default"),
        ("${UNSET:-${FOO:-default}}", "foo"),
        # `$$` is a literal dollar: its example `command: "$$VAR_NOT_INTERPOLATED_BY_COMPOSE"`.
        ("$$VAR_NOT_INTERPOLATED_BY_COMPOSE", "$VAR_NOT_INTERPOLATED_BY_COMPOSE"),
        ("echo $$HOSTNAME", "echo $HOSTNAME"),
        ("$${SET}", "${SET}"),
        ("a$$$SET", "a$value"),
        # "Compose processes any string following a $ sign as long as it makes it a valid
        # variable definition ... In other circumstances, it will be preserved."
        ("cost: $5", "cost: $5"),
        ("$", "$"),
        ("a $ b", "a $ b"),
        ("$-x", "$-x"),
        ("${SET}-${FOO}_$SET.txt", "value-foo_value.txt"),
        ("$SET_X", ""),
    ],
)
def test_the_specifications_examples(text, expected):
    assert Interpolator(VARS).text(text, "f") == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("${UNSET:?must be set}", "required variable UNSET is missing a value: must be set"),
        ("${EMPTY:?must be set}", "required variable EMPTY is missing a value: must be set"),
        ("${UNSET?err $FOO}", "missing a value: err foo"),
        ("${SET/foo/bar}", "invalid interpolation format"),  # not supported by Compose
        ("${}", "invalid interpolation format"),
        ("${SET", "unclosed ${"),
    ],
)
def test_errors_name_the_field(text, reason):
    with pytest.raises(ManifestError) as caught:
        Interpolator(VARS).text(text, "services.web.image")
    assert caught.value.field == "services.web.image"
    assert reason in caught.value.reason


def test_a_compose_file_is_interpolated_in_values_not_keys_with_a_warning_per_unset_name():
    text = """\
x-common: &common
  TAG: "${TAG}"
services:
  web:
    image: "nginx:${TAG:-1.25}"
    command: ["sh", "-c", "echo $$HOSTNAME ${GREETING}"]
    environment:
      $KEY: "${DB:?set DB}"
      MISSING: $NOPE
    ports: ["${PORT-8080}:80"]
"""
    manifest = load_manifest(text, origin=Origin(variables={"DB": "pg", "GREETING": "hi"}))
    (spec,) = manifest.specs
    assert spec.image == "nginx:1.25"
    assert spec.args == ("sh", "-c", "echo $HOSTNAME hi")
    assert spec.env == {"$KEY": "pg", "MISSING": ""}
    assert spec.ports[0].published == 8080
    assert manifest.warnings == (
        "services.web.environment.MISSING: variable NOPE is not set; "
        "substituted with an empty string",
    )
    assert set(manifest.variables) == {"TAG", "GREETING", "DB", "NOPE", "PORT"}
    with pytest.raises(ManifestError) as caught:
        load_manifest(text)
    assert (caught.value.field, "set DB" in caught.value.reason) == (
        "services.web.environment.$KEY",
        True,
    )


def test_kubernetes_documents_are_not_interpolated():
    text = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n"
        "    spec:\n      containers: [{name: w, image: 'x', args: ['$$HOME', '${A}']}]\n"
    )
    (spec,) = load_manifest(text, origin=Origin(variables={"A": "1"})).specs
    assert spec.args == ("$$HOME", "${A}")


def test_env_file_format():
    text = """\
# a comment
PLAIN=value
export EXPORTED=yes
SPACED = around
QUOTED="two words # not a comment"
SINGLE='$NOT_EXPANDED'
ESCAPED="line\\nnext"
COMMENTED=value # a comment
EMPTY=
NAME_ONLY
"""
    assert parse_env_file(text, ".env") == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SPACED": "around",
        "QUOTED": "two words # not a comment",
        "SINGLE": "$NOT_EXPANDED",
        "ESCAPED": "line\nnext",
        "COMMENTED": "value",
        "EMPTY": "",
    }
    with pytest.raises(ManifestError) as caught:
        parse_env_file("OK=1\n1BAD=2\n", ".env")
    assert caught.value.field == ".env:2"


def test_hostile_nesting_is_refused_at_its_depth_limit():
    # Refused as soon as it passes the limit, before looking further in: the error is the
    # depth's, however deep the rest goes (speed lives in benchmarks, not in assertions).
    for depth in (9, 100_000):
        deep = "${A:-" * depth + "x" + "}" * depth
        with pytest.raises(ManifestError) as caught:
            Interpolator({}).text(deep, "f")
        assert "nested more than 8 deep" in caught.value.reason
    assert Interpolator({}).text("${A:-${B:-${C:-x}}}", "f") == "x"


@given(
    st.text(alphabet="${}:-?+_aZ9 $", max_size=60),
    st.dictionaries(st.sampled_from(["a", "Z9", "_"]), st.text(max_size=3)),
)
@settings(max_examples=300, deadline=None)
def test_any_text_interpolates_or_is_refused_naming_the_field(text, variables):
    try:
        result = Interpolator(variables).text(text, "f")
    except ManifestError as exc:
        assert exc.field == "f"
        return
    assert isinstance(result, str)
    if "$" not in text:
        assert result == text
