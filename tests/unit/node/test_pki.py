"""The cluster CA: node certificates, what they name, pinning and renewal times."""

from __future__ import annotations

import pytest
from cryptography import x509

from node.pki.authority import (
    CertificateError,
    create_authority,
    csr_node_id,
    fingerprint,
    issued_by,
    make_csr,
    new_key_pem,
    renewal_time,
    sign_node,
    validity,
)

NOW = 1_800_000_000.0


def test_a_node_certificate_names_the_node_by_the_signers_record_not_the_csr():
    ca = create_authority("c0ffee0000000001", NOW)
    csr = make_csr("aa11", new_key_pem(), ["node-a.example", "bad name!"])
    assert csr_node_id(csr) == "aa11"
    cert_pem = sign_node(ca, csr, node_id="aa11", address="10.0.0.7", lifetime=3600, now=NOW)
    cert = x509.load_pem_x509_certificate(cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["shoal://node/aa11"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert sans.get_values_for_type(x509.DNSName) == ["node-a.example"]
    assert issued_by(cert_pem, ca.cert_pem)
    assert not issued_by(cert_pem, create_authority("c0ffee0000000002", NOW).cert_pem)
    start, end = validity(cert_pem)
    assert end == NOW + 3600 and start < NOW < renewal_time(cert_pem) < end
    with pytest.raises(CertificateError, match="another node"):
        sign_node(ca, csr, node_id="bb22", address="10.0.0.8", lifetime=3600, now=NOW)


def test_lifetimes_are_bounded_and_the_ca_lasts_ten_years():
    ca = create_authority("c0ffee0000000001", NOW)
    assert validity(ca.cert_pem)[1] - NOW > 9.9 * 365 * 86400
    cert = sign_node(
        ca,
        make_csr("aa11", new_key_pem()),
        node_id="aa11",
        address="10.0.0.7",
        lifetime=10**12,
        now=NOW,
    )
    assert validity(cert)[1] == NOW + 90 * 86400
    assert len(fingerprint(ca.cert_pem)) == 64


def test_a_malformed_csr_is_a_clear_error():
    with pytest.raises(CertificateError, match="csr"):
        csr_node_id(b"not a csr")


def test_a_cross_signed_new_root_lets_the_old_root_verify_new_certificates(tmp_path):
    """What rotate-ca relies on: a peer trusting only the old root verifies a node that
    presents a certificate of the new root followed by the new root signed by the old."""
    import socket
    import ssl
    import threading
    import time

    from node.pki.authority import cross_sign

    now = time.time()
    old, new = (
        create_authority("c0ffee0000000001", now),
        create_authority("c0ffee0000000001", now + 1),
    )
    key = new_key_pem()
    leaf = sign_node(
        new, make_csr("aa11", key), node_id="aa11", address="127.0.0.1", lifetime=3600, now=now
    )
    assert issued_by(leaf, new.cert_pem) and not issued_by(leaf, old.cert_pem)
    (tmp_path / "chain.pem").write_bytes(leaf + cross_sign(new, old))
    (tmp_path / "key.pem").write_bytes(key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    for root in (old.cert_pem, new.cert_pem):
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(cadata=root.decode())
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.getpeercert()["subject"] == ((("commonName", "aa11"),),)
    listener.close()
