"""The cluster CA: a root (ECDSA P-256, 10 years) that signs one certificate per node.

A node's certificate names the node in its SAN as the URI `shoal://node/<id>` (and as its
CN), and holds its advertise address and host names, so a client can check it by address
and a server can tell which node called. Nothing here reads a clock or a file: times come in
as arguments, keys and certificates as PEM bytes.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.config import CERT_LIFETIME as NODE_LIFETIME

CA_LIFETIME = 10 * 365 * 86400.0
# The shortest certificate a node may ask for (tests renew within seconds).
MIN_LIFETIME = 5.0
# A certificate is valid from a little before it is signed, for clocks a little behind.
MAX_BACKDATE = 60.0
NODE_URI_PREFIX = "shoal://node/"
# A CSR carries at most this many host names, each a DNS name.
MAX_NAMES = 16
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")
_NODE_ID = re.compile(r"^[0-9a-f]{1,64}$")


class CertificateError(ValueError):
    """A CSR or certificate that cannot be used: malformed, badly signed or naming another."""


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA that can sign: its certificate and private key (PEM)."""

    cert_pem: bytes
    key_pem: bytes


def new_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _when(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


def _ca_certificate(
    subject: x509.Name,
    public_key,
    issuer: x509.Name,
    signer,
    *,
    not_before: float,
    not_after: float,
) -> bytes:
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_when(not_before))
        .not_valid_after(_when(not_after))
        # Path length 1: a cross-signed root stands between a node and the old root.
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def create_authority(cluster_id: str, now: float) -> Authority:
    """A new self-signed root for the cluster `cluster_id`; each root has a name of its own
    (its creation time), so that an old and a new one are told apart during a rotation."""
    key_pem = new_key_pem()
    key = serialization.load_pem_private_key(key_pem, None)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shoal"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"shoal cluster {cluster_id} CA {int(now)}"),
        ]
    )
    cert = _ca_certificate(
        name, key.public_key(), name, key, not_before=now - 300, not_after=now + CA_LIFETIME
    )
    return Authority(cert, key_pem)


def cross_sign(new: Authority, old: Authority) -> bytes:
    """The new root's certificate signed by the old root: a node presents it after its own
    certificate, so a peer that trusts only the old root still verifies a certificate the
    new root signed (Swarm's root rotation does the same)."""
    new_cert = x509.load_pem_x509_certificate(new.cert_pem)
    old_cert = x509.load_pem_x509_certificate(old.cert_pem)
    old_key = serialization.load_pem_private_key(old.key_pem, None)
    return _ca_certificate(
        new_cert.subject,
        new_cert.public_key(),
        old_cert.subject,
        old_key,
        not_before=new_cert.not_valid_before_utc.timestamp(),
        not_after=old_cert.not_valid_after_utc.timestamp(),
    )


def make_csr(node_id: str, key_pem: bytes, names: Iterable[str] = ()) -> bytes:
    """A certificate signing request for node `node_id` with host names `names`."""
    key = serialization.load_pem_private_key(key_pem, None)
    dns = [x509.DNSName(n) for n in sorted(set(names)) if _DNS_NAME.match(n)][:MAX_NAMES]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName(dns), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
        serialization.Encoding.PEM
    )


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CertificateError(f"csr: not a PEM certificate signing request ({exc})") from None
    if not csr.is_signature_valid:
        raise CertificateError("csr: its signature does not verify")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise CertificateError("csr: the key must be an ECDSA key")
    return csr


def csr_node_id(csr_pem: bytes) -> str:
    """The node a CSR asks a certificate for (its CN)."""
    names = _load_csr(csr_pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    node_id = str(names[0].value) if names else ""
    if not _NODE_ID.match(node_id):
        raise CertificateError("csr: its common name must be the node's id")
    return node_id


def sign_node(
    authority: Authority,
    csr_pem: bytes,
    *,
    node_id: str,
    address: str,
    lifetime: float,
    now: float,
    csr_names: str = "",
) -> bytes:
    """The certificate for node `node_id` at `address` from its CSR. The node's id and
    address come from the signer (the cluster's record), never from the CSR; only host names
    do, which prove nothing but how the node may be addressed. The CSR names `node_id`, or
    `csr_names` when the node asked under another id (a node taking back its old place)."""
    csr = _load_csr(csr_pem)
    if csr_node_id(csr_pem) != (csr_names or node_id):
        raise CertificateError(f"csr: it names another node than {csr_names or node_id}")
    try:
        asked = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n for n in asked.get_values_for_type(x509.DNSName) if _DNS_NAME.match(n)]
    except x509.ExtensionNotFound:
        names = []
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(NODE_URI_PREFIX + node_id)]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(address)))
    except ValueError:
        names.append(address)
    sans += [x509.DNSName(n) for n in sorted(set(names))[:MAX_NAMES]]
    ca_cert = x509.load_pem_x509_certificate(authority.cert_pem)
    ca_key = serialization.load_pem_private_key(authority.key_pem, None)
    lifetime = max(MIN_LIFETIME, min(lifetime, NODE_LIFETIME))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_when(now - min(MAX_BACKDATE, lifetime / 10)))
        .not_valid_after(_when(now + lifetime))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )  # type: ignore[arg-type]
        .sign(ca_key, hashes.SHA256())
    )  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certificates(bundle_pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(bundle_pem)
    except ValueError as exc:
        raise CertificateError(f"not PEM certificates ({exc})") from None


def split_bundle(bundle_pem: bytes) -> list[str]:
    """Each certificate of a PEM bundle, as PEM."""
    return [
        c.public_bytes(serialization.Encoding.PEM).decode() for c in load_certificates(bundle_pem)
    ]


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 (hex) of a certificate's DER: what a join token pins."""
    cert = load_certificates(cert_pem)[0]
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def issued_by(cert_pem: bytes, bundle_pem: bytes) -> bool:
    """Whether the first certificate of `cert_pem` is signed by one of the CAs in the bundle."""
    cert = load_certificates(cert_pem)[0]
    for ca in load_certificates(bundle_pem):
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


def validity(cert_pem: bytes) -> tuple[float, float]:
    """(not before, not after) of a certificate, as Unix times."""
    cert = load_certificates(cert_pem)[0]
    return (cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())


def renewal_time(cert_pem: bytes) -> float:
    """When a certificate is renewed: at two thirds of its lifetime."""
    start, end = validity(cert_pem)
    return start + (end - start) * 2 / 3


def node_id_from_peercert(peercert: dict | None) -> str:
    """The node a verified peer certificate (ssl's getpeercert() form) names; "" for none."""
    for kind, value in (peercert or {}).get("subjectAltName", ()):
        if kind == "URI" and value.startswith(NODE_URI_PREFIX):
            node_id = value[len(NODE_URI_PREFIX) :]
            if _NODE_ID.match(node_id):
                return node_id
    return ""
