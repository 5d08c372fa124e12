"""Every file of the public corpus (tests/fixtures/corpus, sources in its README) translates
to service specs, or is refused for a reason docker stack deploy or kubectl would also refuse
it for, with an error naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

import consensus  # noqa: F401
from node.manifests import STACK_LABEL, ManifestError, load_manifest
from node.manifests.local import local_origin

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"
# Beside the Compose files lie the files they read (configs, rules), some of them YAML too.
FILES = sorted(
    p
    for p in CORPUS.rglob("*")
    if p.suffix in (".yaml", ".yml")
    and (p.relative_to(CORPUS).parts[0] == "kubernetes" or "compose" in p.name or "stack" in p.name)
)

# Services with `build:` and no `image:`: docker stack deploy has no image to run either.
_BUILD_ONLY = {
    "compose/awesome-compose/angular/compose.yaml": "services.web.image",
    "compose/awesome-compose/apache-php/compose.yaml": "services.web.image",
    "compose/awesome-compose/aspnet-mssql/compose.yaml": "services.web.image",
    "compose/awesome-compose/django/compose.yaml": "services.web.image",
    "compose/awesome-compose/fastapi/compose.yaml": "services.api.image",
    "compose/awesome-compose/flask/compose.yaml": "services.web.image",
    "compose/awesome-compose/flask-redis/compose.yaml": "services.web.image",
    "compose/awesome-compose/nginx-aspnet-mysql/compose.yaml": "services.backend.image",
    "compose/awesome-compose/nginx-flask-mongo/compose.yaml": "services.backend.image",
    "compose/awesome-compose/nginx-flask-mysql/compose.yaml": "services.backend.image",
    "compose/awesome-compose/nginx-golang/compose.yaml": "services.backend.image",
    "compose/awesome-compose/nginx-golang-mysql/compose.yaml": "services.backend.image",
    "compose/awesome-compose/nginx-golang-postgres/compose.yaml": "services.backend.image",
    "compose/awesome-compose/nginx-nodejs-redis/compose.yaml": "services.web1.image",
    "compose/awesome-compose/nginx-wsgi-flask/compose.yaml": "services.nginx-proxy.image",
    "compose/awesome-compose/react-express-mongodb/compose.yaml": "services.frontend.image",
    "compose/awesome-compose/react-express-mysql/compose.yaml": "services.backend.image",
    "compose/awesome-compose/react-java-mysql/compose.yaml": "services.backend.image",
    "compose/awesome-compose/react-nginx/compose.yaml": "services.frontend.image",
    "compose/awesome-compose/react-rust-postgres/compose.yaml": "services.frontend.image",
    "compose/awesome-compose/sparkjava/compose.yaml": "services.sparkjava.image",
    "compose/awesome-compose/sparkjava-mysql/compose.yaml": "services.backend.image",
    "compose/awesome-compose/spring-postgres/compose.yaml": "services.backend.image",
    "compose/awesome-compose/traefik-golang/compose.yaml": "services.backend.image",
    "compose/awesome-compose/vuejs/compose.yaml": "services.web.image",
    "compose/example-voting-app/docker-compose.yml": "services.vote.image",
    "compose/atsea-sample-shop-app/docker-compose.yml": "services.reverse_proxy.image",
}
REFUSED = {name: (field, "build: but no image:") for name, field in _BUILD_ONLY.items()} | {
    # ${DOMAIN?Variable DOMAIN not set}: docker stack deploy stops on it too.
    "compose/swarmprom/docker-compose.traefik.yml": (
        "services.grafana.deploy.labels[3]",
        "required variable DOMAIN is missing a value",
    ),
}
# Secrets a file names as external: they must exist before it applies, as in Swarm.
EXTERNAL_SECRETS = {
    "compose/atsea-sample-shop-app/docker-stack.yml": (
        "postgres_password",
        "staging_token",
        "revprox_key",
        "revprox_cert",
    ),
}
# Networks a file names as external: made before it applies, as `docker network create`.
EXTERNAL_NETWORKS = {"compose/swarmprom/test-compose.yml": ("mon_net",)}


def corpus_outcome(path: Path, environ: dict[str, str]):
    """The manifest of one corpus file as `shoal apply -f FILE` reads it (its .env, its
    directory, its stack), or the ManifestError refusing it."""
    origin = local_origin(path, environ)
    try:
        return load_manifest(path.read_text(), origin=origin)
    except ManifestError as exc:
        return exc


def test_the_corpus_is_as_large_as_promised():
    compose = [p for p in FILES if "compose" in p.relative_to(CORPUS).parts[0]]
    kube = [p for p in FILES if p.relative_to(CORPUS).parts[0] == "kubernetes"]
    assert len(compose) >= 20 and len(kube) >= 15
    assert len(compose) - len(REFUSED) >= 15  # most Compose files apply
    listed = (CORPUS / "README.md").read_text()
    assert all(f"`{p.relative_to(CORPUS)}`" in listed for p in FILES), (
        "a file's source is not recorded"
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_each_file_applies_or_is_refused_naming_the_field(path: Path):
    name = str(path.relative_to(CORPUS))
    outcome = corpus_outcome(path, {})
    if name in REFUSED:
        field, reason = REFUSED[name]
        assert isinstance(outcome, ManifestError), f"{name} applied, expected a refusal"
        assert (outcome.field, reason in outcome.reason) == (field, True)
        return
    assert not isinstance(outcome, ManifestError), f"{name}: {outcome.field}: {outcome.reason}"
    # kubectl applies a file of kinds Shoal has no use for: each is then a warning.
    assert outcome.specs or outcome.attachments or outcome.files or outcome.warnings, name
    for spec in outcome.specs:
        assert spec.labels[STACK_LABEL] == path.parent.name.lower().replace(".", "")
    for warning in outcome.warnings:
        assert len(warning) < 600, warning


def test_dot_env_beside_the_file_fills_its_variables_under_the_shell():
    path = CORPUS / "compose/awesome-compose/postgresql-pgadmin/compose.yaml"
    manifest = corpus_outcome(path, {})
    postgres = next(s for s in manifest.specs if s.name == "postgres")
    assert postgres.env["POSTGRES_USER"] == "yourUser"  # from the .env beside the file
    assert not [w for w in manifest.warnings if "is not set" in w]
    shell = corpus_outcome(path, {"POSTGRES_USER": "fromshell"})
    assert next(s for s in shell.specs if s.name == "postgres").env["POSTGRES_USER"] == "fromshell"


def test_underscores_in_a_swarm_stacks_service_names():
    manifest = corpus_outcome(CORPUS / "compose/atsea-sample-shop-app/docker-stack.yml", {})
    assert {"reverse_proxy", "payment_gateway"} <= {s.name for s in manifest.specs}
    assert {f.name for f in manifest.files if f.external} == set(
        EXTERNAL_SECRETS["compose/atsea-sample-shop-app/docker-stack.yml"]
    )


def test_kubernetes_services_alone_become_attachments_by_selector():
    manifest = corpus_outcome(CORPUS / "kubernetes/example-voting-app/vote-service.yaml", {})
    (attachment,) = manifest.attachments
    assert attachment.selector == {"app": "vote"}
    assert attachment.ports == (
        {"target": 80, "published": 31000, "protocol": "tcp", "vip_port": 8080},
    )
