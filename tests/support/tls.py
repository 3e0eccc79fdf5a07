"""A private CA and certificates made per test run (the ``cryptography`` package), written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "doow-track Test Private CA"


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as PEM file paths."""

    cert: str
    key: str


@dataclass(frozen=True)
class Pki:
    """What the tests need: the CA that signs everything, a server pair for 127.0.0.1, a client pair."""

    ca: str
    server: Pair
    client: Pair
    client_ca: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: Optional[Tuple[x509.Name, ec.EllipticCurvePrivateKey]],
           *, ca: bool, usage: Optional[List] = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage or []), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(directory: str) -> Pki:
    """A server CA, a server certificate for localhost and 127.0.0.1, and a client certificate from another CA."""
    ca_key, client_ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _issue(CA_NAME, ca_key, None, ca=True)
    client_ca = _issue("doow-track Test Client CA", client_ca_key, None, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = _issue("127.0.0.1", server_key, (ca.subject, ca_key), ca=False,
                    usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    client = _issue("doow-track test client", client_key, (client_ca.subject, client_ca_key), ca=False,
                    usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return Pki(
        ca=_write(directory, "ca.pem", _cert_pem(ca)),
        server=Pair(_write(directory, "server.pem", _cert_pem(server)), _write(directory, "server.key", _key_pem(server_key))),
        client=Pair(_write(directory, "client.pem", _cert_pem(client)), _write(directory, "client.key", _key_pem(client_key))),
        client_ca=_write(directory, "client-ca.pem", _cert_pem(client_ca)),
    )
