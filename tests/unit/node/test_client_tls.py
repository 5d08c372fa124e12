"""A Shoal process keeps no CA bundle in memory for aiohttp's unused default contexts, yet the
client still verifies an `https://` API address against the system's trust store."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.cli.lean_client import LeanClient, run_loop_free
from node.client import ShoalClient, Unreachable
from tests.support import python_probe


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def pki(tmp_path: Path) -> dict:
    """A CA, and a server certificate for 127.0.0.1 that it signed."""
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _cert("shoal test CA", ca_key, "shoal test CA", ca_key, ca=True)
    server = _cert("127.0.0.1", server_key, "shoal test CA", ca_key, ca=False)
    paths = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
    }
    paths["ca"].write_bytes(_pem(ca))
    paths["cert"].write_bytes(_pem(server))
    paths["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
async def https_api(pki: dict):
    """An HTTPS server answering GET /v1/services as the API would."""

    async def services(_request: web.Request) -> web.Response:
        return web.json_response([{"name": "web"}])

    app = web.Application()
    app.router.add_get("/v1/services", services)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pki["cert"], pki["key"])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_tls)
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


# The nodes' client and the CLI's.
clients = pytest.mark.parametrize("client_class", [ShoalClient, LeanClient])


@clients
async def test_the_client_verifies_an_https_api_against_the_system_trust_store(
    https_api: str, pki: dict, monkeypatch: pytest.MonkeyPatch, client_class
):
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))  # the trust store this "system" has
    async with client_class(https_api) as client:
        assert await client.get("/v1/services") == [{"name": "web"}]


@clients
async def test_the_client_refuses_an_https_api_the_trust_store_does_not_vouch_for(
    https_api: str, monkeypatch: pytest.MonkeyPatch, client_class
):
    monkeypatch.setenv("SSL_CERT_FILE", os.devnull)
    monkeypatch.setenv("SSL_CERT_DIR", os.devnull)
    async with client_class(https_api) as client:
        with pytest.raises(Unreachable, match="certificate verify failed"):
            await client.get("/v1/services")


async def test_the_blocking_cli_client_verifies_an_https_api_too(
    https_api: str, pki: dict, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["ca"]))
    trusted = LeanClient(https_api, blocking=True)
    assert await asyncio.to_thread(run_loop_free, trusted.get("/v1/services")) == [{"name": "web"}]
    monkeypatch.setenv("SSL_CERT_FILE", os.devnull)
    monkeypatch.setenv("SSL_CERT_DIR", os.devnull)
    with pytest.raises(Unreachable, match="certificate verify failed"):
        await asyncio.to_thread(
            run_loop_free, LeanClient(https_api, blocking=True).get("/v1/services")
        )


def test_a_shoal_process_holds_no_ca_bundle_and_keeps_the_operators_tls_environment(pki: dict):
    probe = (
        "import gc, json, os, ssl\n"
        "import node.cli.main, node\nnode.import_aiohttp_for_a_node()\nimport node.server\n"
        "held = [c.cert_store_stats()['x509'] for c in gc.get_objects() if isinstance(c, ssl.SSLContext)]\n"
        "print(json.dumps({'held': held, 'file': os.environ.get('SSL_CERT_FILE'),\n"
        "                  'dir': os.environ.get('SSL_CERT_DIR'),\n"
        "                  'fresh': ssl.create_default_context().cert_store_stats()['x509']}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_DIR"}
    env["SSL_CERT_FILE"] = str(pki["ca"])
    seen = python_probe(probe, env)
    assert seen["held"] and set(seen["held"]) == {0}, (
        "aiohttp's default contexts loaded CA certificates"
    )
    assert seen["file"] == str(pki["ca"]) and seen["dir"] is None
    assert seen["fresh"] == 1, "a context made later does not see the operator's SSL_CERT_FILE"
