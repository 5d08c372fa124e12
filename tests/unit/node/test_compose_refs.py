"""Compose's top-level secrets, configs and volumes, and the services' references to them."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import consensus  # noqa: F401
from consensus.services import FileRef, VolumeRef
from node.manifests import ManifestError, load_manifest
from node.manifests.refs import FileSource
from tests.unit.node.test_manifests import _paths, _replace

STACK = """\
services:
  db:
    image: postgres
    secrets:
      - db_password
      - source: tls_key
        target: server.key
        mode: 0400
    configs:
      - pg_conf
      - source: motd
        target: /etc/motd
        mode: "0440"
    volumes:
      - data:/var/lib/postgresql/data
      - /srv/backups:/backups:ro
      - /scratch
      - type: volume
        source: logs
        target: /var/log/pg
        read_only: true
      - type: tmpfs
        target: /run/pg
secrets:
  db_password:
    file: ./db_password.txt
  tls_key:
    name: prod_tls_key
    file: /etc/ssl/private/key.pem
  api_token:
    external: true
configs:
  pg_conf:
    file: pg.conf
  motd:
    content: "hello\\n"
volumes:
  data:
  logs:
    name: pg_logs
    driver: local
"""


def test_services_refer_to_top_level_secrets_configs_and_volumes():
    manifest = load_manifest(STACK, strict=False)
    (db,) = manifest.specs
    assert db.secrets == (FileRef("db_password"), FileRef("prod_tls_key", "server.key", 0o400))
    assert db.configs == (FileRef("pg_conf"), FileRef("motd", "/etc/motd", 0o440))
    assert db.volumes == (
        VolumeRef("/var/lib/postgresql/data", "data"),
        VolumeRef("/backups", "/srv/backups", "bind", True),
        VolumeRef("/scratch"),
        VolumeRef("/var/log/pg", "pg_logs", "volume", True),
        VolumeRef("/run/pg", "", "tmpfs"),
    )
    assert manifest.files == (
        FileSource("secret", "db_password", "secrets.db_password", file="./db_password.txt"),
        FileSource("secret", "prod_tls_key", "secrets.tls_key", file="/etc/ssl/private/key.pem"),
        FileSource("config", "pg_conf", "configs.pg_conf", file="pg.conf"),
        FileSource("config", "motd", "configs.motd", content=b"hello\n"),
    )
    assert manifest.warnings == ("secrets.api_token: no service uses it, not created",)


def test_a_renamed_secret_is_mounted_under_its_key_as_compose_does():
    text = STACK.replace("      - db_password\n", "      - tls_key\n      - db_password\n", 1)
    text = text.replace(
        "      - source: tls_key\n        target: server.key\n        mode: 0400\n", ""
    )
    (db,) = load_manifest(text).specs
    assert db.secrets[0] == FileRef("prod_tls_key", "tls_key")


def test_an_external_secret_that_a_service_uses_is_listed_to_be_checked():
    text = STACK.replace("      - db_password\n", "      - api_token\n      - db_password\n", 1)
    manifest = load_manifest(text, strict=True)
    assert FileSource("secret", "api_token", "secrets.api_token", external=True) in manifest.files


@pytest.mark.parametrize(
    "old, new, warning",
    [
        (
            "    driver: local\n",
            "    driver: nfs\n",
            "volumes.logs.driver: 'nfs' is not supported; Shoal keeps 'logs' as a local named volume on each node that uses it",
        ),
        (
            "        mode: 0400\n",
            "        mode: 0400\n        uid: '103'\n",
            "services.db.secrets[1].uid: not supported, ignored",
        ),
        (
            "/backups:ro",
            "/backups:ro,z",
            "services.db.volumes[1]: option 'z' not supported, ignored",
        ),
        (
            "        target: /run/pg\n",
            "        target: /run/pg\n        tmpfs: {size: 1000}\n",
            "services.db.volumes[4].tmpfs: not supported, ignored",
        ),
        (
            "  data:\n",
            "  data:\n    driver_opts: {type: nfs}\n",
            "volumes.data.driver_opts: not supported, ignored",
        ),
    ],
)
def test_what_shoal_does_not_act_on_is_a_warning(old, new, warning):
    assert old in STACK
    manifest = load_manifest(STACK.replace(old, new, 1))
    assert warning in manifest.warnings
    with pytest.raises(ManifestError, match="strict mode"):
        load_manifest(STACK.replace(old, new, 1), strict=True)


@pytest.mark.parametrize(
    "old, new, field, reason",
    [
        (
            "      - db_password\n",
            "      - nope\n",
            "services.db.secrets[0]",
            "secret 'nope' is not defined in the file's top-level secrets",
        ),
        (
            "      - source: motd\n",
            "      - source: tls_key\n",
            "services.db.configs[1].source",
            "config 'tls_key' is not defined in the file's top-level configs",
        ),
        (
            "      - data:/var",
            "      - other:/var",
            "services.db.volumes[0]",
            "volume 'other' is not defined in the file's top-level volumes",
        ),
        (
            "      - /srv/backups:",
            "      - ./backups:",
            "services.db.volumes[1]",
            "the host path './backups' is relative",
        ),
        (
            "        source: logs\n",
            "        source: [logs]\n",
            "services.db.volumes[3].source",
            "must be a volume's name",
        ),
        (
            "      - type: tmpfs\n",
            "      - type: npipe\n",
            "services.db.volumes[4].type",
            "must be volume, bind or tmpfs",
        ),
        (
            "/backups:ro",
            "/backups:ro:x",
            "services.db.volumes[1]",
            "expected [SOURCE:]TARGET[:OPTIONS]",
        ),
        ("/backups:ro", "/backups:rx", "services.db.volumes[1]", "unknown volume option 'rx'"),
        ("- /scratch", "- scratch", "services.db.volumes[2].target", "must be an absolute path"),
        (
            '        mode: "0440"\n',
            '        mode: "rw"\n',
            "services.db.configs[1].mode",
            "octal file mode",
        ),
        (
            "        mode: 0400\n",
            "        mode: 0o7777\n",
            "services.db.secrets[1].mode",
            "file mode 0-0o777",
        ),
        (
            "    file: ./db_password.txt\n",
            "    file: ./db_password.txt\n    external: true\n",
            "secrets.db_password",
            "needs exactly one of file: or external: true, not file and external",
        ),
        (
            "    file: pg.conf\n",
            "",
            "configs.pg_conf",
            "needs exactly one of file:, content: or external: true",
        ),
        (
            "    file: pg.conf\n",
            "    environment: PG_CONF\n",
            "configs.pg_conf",
            "needs exactly one",
        ),
        (
            "    name: prod_tls_key\n",
            "    name: prod/tls\n",
            "secrets.tls_key.name",
            "is not a valid name",
        ),
        ("    name: pg_logs\n", "    name: ../logs\n", "volumes.logs.name", "is not a volume name"),
        (
            "    external: true\n",
            "    external: maybe\n",
            "secrets.api_token.external",
            "must be true or false",
        ),
        ("    file: pg.conf\n", "    file: 7\n", "configs.pg_conf.file", "must be a file path"),
    ],
)
def test_bad_references_and_definitions_name_the_field(old, new, field, reason):
    assert old in STACK
    with pytest.raises(ManifestError) as info:
        load_manifest(STACK.replace(old, new, 1))
    assert info.value.field == field
    assert reason in info.value.reason


yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.text(max_size=12)
    | st.sampled_from(
        ["data:/x", "/a:/b:ro", "./rel:/x", "0440", "db_password", "volume", "tmpfs"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "source",
                    "target",
                    "mode",
                    "type",
                    "file",
                    "external",
                    "name",
                    "content",
                    "driver",
                    "read_only",
                    "secrets",
                    "configs",
                    "volumes",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.data(), yaml_values)
def test_the_stack_with_one_field_garbled_never_crashes(data, garbage):
    doc = yaml.safe_load(STACK)
    path = data.draw(st.sampled_from(list(_paths(doc))))
    try:
        load_manifest(json.dumps(_replace(doc, path, garbage)))
    except ManifestError as exc:
        assert exc.field and exc.reason
