"""C2PA content credentials: a signed manifest inside the mp4 saying the video is AI-generated.

The manifest (written with ``c2pa-python``, the Content Authenticity Initiative's library) holds one
``c2pa.actions.v2`` assertion, ``c2pa.created`` with ``digitalSourceType`` = IPTC's
``trainedAlgorithmicMedia`` and memface_hub as the software agent, and a ``cawg.training-mining`` assertion
(no AI training on the output). The claim is signed with a certificate and private key the user
configures — this package ships none:

* ``SigningKey.from_files("chain.pem", "key.pem")`` — PEM certificate chain (signing certificate first,
  not a CA, key usage ``digitalSignature``; a chain ending in a self-signed test CA works) and its PEM
  private key (EC P-256/P-384/P-521 → ES256/384/512, Ed25519, or RSA → PS256);
* or the environment: ``MEMFACE_C2PA_CERT`` and ``MEMFACE_C2PA_KEY`` (each a file path or the PEM text
  itself, e.g. a Space secret), optional ``MEMFACE_C2PA_TSA_URL`` (an RFC 3161 time-stamp authority).

A manifest is bound to the file's bytes: it survives copying and renaming, not re-encoding (that is what the
watermark in the frames is for). Anyone can read it: ``memface verify VIDEO``, or
https://contentcredentials.org/verify. Without a trust anchor the signer is reported as
``signingCredential.untrusted`` and the state as ``Valid`` (intact and signed); with ``trust_anchors`` (PEM of the
CA) it is ``Trusted``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MemFaceInputError

logger = logging.getLogger(__name__)

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ENV_CERT, ENV_KEY, ENV_TSA = "MEMFACE_C2PA_CERT", "MEMFACE_C2PA_KEY", "MEMFACE_C2PA_TSA_URL"
INSTALL_HINT = "pip install 'memface_hub[provenance]' (c2pa-python)"


def c2pa_available() -> bool:
    """Whether ``c2pa-python`` can be imported here."""
    try:
        import c2pa  # noqa: F401
    except (ImportError, OSError):   # OSError: its native library failed to load
        return False
    return True


def _pem(value: str | bytes | os.PathLike, what: str) -> bytes:
    """PEM bytes from PEM text or a path to a PEM file."""
    if isinstance(value, bytes):
        text = value
    elif isinstance(value, str) and "-----BEGIN" in value:
        text = value.encode()
    else:
        path = Path(value)
        if not path.is_file():
            raise MemFaceInputError(path, f"{what}: no such file (a PEM file, or the PEM text itself)")
        text = path.read_bytes()
    if b"-----BEGIN" not in text:
        raise MemFaceInputError(what, "is not PEM (expected '-----BEGIN ...')")
    return text


def _algorithm_for(private_key: bytes) -> str:
    """The C2PA signing algorithm that matches a PEM private key."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise MemFaceInputError("C2PA signing key", f"given, but signing needs {INSTALL_HINT}") from None

    try:
        key = load_pem_private_key(private_key, password=None)
    except (ValueError, TypeError) as err:
        raise MemFaceInputError("C2PA private key", f"cannot be read ({err}); an unencrypted PEM key is needed") \
            from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        bits = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(key.curve.name)
        if bits is None:
            raise MemFaceInputError("C2PA private key", f"curve {key.curve.name} is not one C2PA signs with "
                                                        "(P-256, P-384, P-521)")
        return bits
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise MemFaceInputError("C2PA private key", f"{type(key).__name__} keys are not supported "
                                                "(EC P-256/384/521, Ed25519 or RSA)")


@dataclass(frozen=True)
class SigningKey:
    """A C2PA signing credential: PEM certificate chain (signing certificate first) and its private key."""

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    algorithm: str = "es256"                  # es256/es384/es512/ps256/ed25519, matching the key
    timestamp_url: str | None = None          # RFC 3161 time-stamp authority (needs the network)

    @classmethod
    def from_files(cls, certificate_chain: str | os.PathLike | bytes, private_key: str | os.PathLike | bytes,
                   timestamp_url: str | None = None) -> SigningKey:
        """From PEM files (or PEM text); the algorithm follows from the key."""
        chain = _pem(certificate_chain, "C2PA certificate chain")
        key = _pem(private_key, "C2PA private key")
        return cls(chain, key, _algorithm_for(key), timestamp_url)

    @classmethod
    def from_env(cls) -> SigningKey | None:
        """From ``MEMFACE_C2PA_CERT`` / ``MEMFACE_C2PA_KEY`` (paths or PEM text); None when neither is set."""
        cert, key = os.environ.get(ENV_CERT, "").strip(), os.environ.get(ENV_KEY, "").strip()
        if not cert and not key:
            return None
        if not (cert and key):
            missing = ENV_KEY if cert else ENV_CERT
            raise MemFaceInputError(missing, f"is not set; C2PA signing needs both {ENV_CERT} and {ENV_KEY}")
        return cls.from_files(cert, key, os.environ.get(ENV_TSA) or None)


def manifest_definition(title: str, version: str) -> dict:
    """The C2PA manifest this package writes: created by memface_hub, digital source type
    ``trainedAlgorithmicMedia``, no generative-AI training on it."""
    agent = {"name": "memface_hub", "version": version}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "format": "video/mp4",
        "assertions": [
            {"label": "c2pa.actions.v2",
             "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                                   "softwareAgent": agent,
                                   "description": "talking-face video generated by MemFace (memface_hub)"}]}},
            {"label": "cawg.training-mining",
             "data": {"entries": {"cawg.ai_generative_training": {"use": "notAllowed"},
                                  "cawg.ai_training": {"use": "notAllowed"}}}},
        ],
    }


def add_content_credentials(path: str | os.PathLike, key: SigningKey) -> Path:
    """Sign ``path`` (an mp4) in place with a C2PA manifest declaring it AI-generated; atomic (the signed
    copy is written beside it and renamed over it). Raises ``MemFaceInputError`` for a bad key or file."""
    import c2pa

    from .. import __version__

    path = Path(path)
    signer_info = c2pa.C2paSignerInfo(key.algorithm, key.certificate_chain, key.private_key, key.timestamp_url)
    handle, staging = tempfile.mkstemp(prefix=".memface-c2pa-", suffix=".mp4", dir=path.parent)
    os.close(handle)
    try:
        with c2pa.Signer.from_info(signer_info) as signer, \
                c2pa.Builder(manifest_definition(path.name, __version__)) as builder, \
                open(path, "rb") as source, open(staging, "w+b") as target:
            builder.sign(signer, "video/mp4", source, target)
        os.replace(staging, path)
    except c2pa.C2paError as err:
        raise MemFaceInputError(path, f"C2PA signing failed ({' '.join(str(err).split())[:300]})") from None
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return path


def sign_generated_video(path: str | os.PathLike, key: SigningKey | None) -> bool:
    """Add the credentials to a generated video when a key is configured and c2pa-python is installed;
    otherwise say in the log, clearly, that they were not added. Returns whether they were."""
    path = Path(path)
    if key is None:
        logger.warning("%s: C2PA content credentials were NOT added: no signing key is configured (set %s and %s, "
                       "or pass signing_key=); the frames still carry the invisible watermark", path.name,
                       ENV_CERT, ENV_KEY)
        return False
    if not c2pa_available():
        logger.warning("%s: C2PA content credentials were NOT added: c2pa-python is not installed (%s); the frames "
                       "still carry the invisible watermark", path.name, INSTALL_HINT)
        return False
    add_content_credentials(path, key)
    logger.info("%s: signed C2PA content credentials added (AI-generated, %s)", path.name, key.algorithm)
    return True


def create_test_signing_key(folder: str | os.PathLike) -> tuple[Path, Path, Path]:
    """A throwaway test CA and a signing certificate under it (EC P-256, valid 7 days) in ``folder``:
    ``(chain.pem, key.pem, ca.pem)``. For tests and for trying the credentials out; nobody trusts it (use a
    certificate from a CA for real outputs)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "memface tests")])

    def usage(signing: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=signing, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not signing,
                             crl_sign=not signing, encipher_only=False, decipher_only=False)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    valid = dict(not_valid_before=now - datetime.timedelta(days=1), not_valid_after=now + datetime.timedelta(days=7))
    ca = (x509.CertificateBuilder(**valid).subject_name(name("memface test CA")).issuer_name(name("memface test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(usage(signing=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder(**valid).subject_name(name("memface test signer")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(signing=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    folder = Path(folder)
    chain, key_path, ca_path = folder / "chain.pem", folder / "key.pem", folder / "ca.pem"
    chain.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ca_path.write_bytes(ca.public_bytes(pem))
    return chain, key_path, ca_path


@dataclass
class CredentialsReport:
    """What :func:`read_content_credentials` found in a file.

    ``state``: ``"absent"`` (no manifest), ``"Invalid"`` (present but tampered or badly signed),
    ``"Valid"`` (intact, signature good, signer not in a trust list), ``"Trusted"`` (and the signer chains
    to a given trust anchor), ``"unsupported"`` (a container C2PA has no place in, e.g. MPEG-PS), or
    ``"unavailable"`` (c2pa-python not installed)."""

    present: bool
    state: str
    ai_generated: bool = False                     # a c2pa.created/opened action with an AI digitalSourceType
    assertions: list[str] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    signer: dict = field(default_factory=dict)     # issuer, common_name, alg
    claim_generator: list = field(default_factory=list)
    failures: list[str] = field(default_factory=list)   # validation failure codes

    @property
    def valid(self) -> bool:
        return self.state in ("Valid", "Trusted")

    def to_dict(self) -> dict:
        return {"present": self.present, "state": self.state, "valid": self.valid,
                "ai_generated": self.ai_generated, "assertions": self.assertions, "actions": self.actions,
                "signer": self.signer, "claim_generator": self.claim_generator, "failures": self.failures}


def read_content_credentials(path: str | os.PathLike, trust_anchors: str | os.PathLike | bytes | None = None
                             ) -> CredentialsReport:
    """Read and validate the C2PA manifest of ``path``; ``trust_anchors``: PEM of CA certificates to trust."""
    path = Path(path)
    if not c2pa_available():
        return CredentialsReport(False, "unavailable")
    import c2pa

    context = None
    if trust_anchors is not None:
        settings = {"verify": {"verify_trust": True},
                    "trust": {"trust_anchors": _pem(trust_anchors, "trust anchors").decode()}}
        context = c2pa.Context.from_dict(settings)
    try:
        with c2pa.Reader(str(path), context=context) as reader:     # the container is told by the bytes
            store = json.loads(reader.json())
            state = reader.get_validation_state() or "Invalid"
    except c2pa.C2paError as err:
        kind, text = type(err).__name__, " ".join(str(err).split())
        if "ManifestNotFound" in kind:
            return CredentialsReport(False, "absent")
        if "NotSupported" in kind:                                   # e.g. MPEG-PS, MKV: C2PA cannot live there
            return CredentialsReport(False, "unsupported")
        return CredentialsReport(True, "Invalid", failures=[text[:300]])
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    assertions = [assertion.get("label", "") for assertion in manifest.get("assertions", [])]
    actions = []
    for assertion in manifest.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            actions += assertion.get("data", {}).get("actions", [])
    ai_sources = (TRAINED_ALGORITHMIC_MEDIA, "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia")
    ai_generated = any(str(action.get("digitalSourceType", "")).endswith(ai_sources) for action in actions)
    failures = [status.get("code", "") for status in store.get("validation_status", [])
                if status.get("code") != "signingCredential.untrusted" or trust_anchors is not None]
    info = manifest.get("signature_info", {})
    return CredentialsReport(True, state, ai_generated, assertions,
                             [{k: action[k] for k in ("action", "digitalSourceType") if k in action}
                              for action in actions],
                             {k: info[k] for k in ("issuer", "common_name", "alg") if k in info},
                             manifest.get("claim_generator_info", []), failures)
