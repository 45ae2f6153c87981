//! A test PKI: a CA and leaf certificates for `localhost`/127.0.0.1, written as PEM files.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509NameBuilder, X509};

pub fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

pub fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

/// A self-signed CA.
pub fn ca(cn: &str) -> (X509, PKey<Private>) {
    let k = new_key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&k).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
        .unwrap();
    let skid = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(skid).unwrap();
    b.sign(&k, MessageDigest::sha256()).unwrap();
    (b.build(), k)
}

/// A leaf for `localhost` and 127.0.0.1, signed by `ca`.
pub fn leaf(ca: &(X509, PKey<Private>), cn: &str, client: bool) -> (X509, PKey<Private>) {
    let k = new_key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name.build()).unwrap();
    b.set_issuer_name(ca.0.subject_name()).unwrap();
    b.set_pubkey(&k).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(Some(&ca.0), None))
        .unwrap();
    b.append_extension(san).unwrap();
    let mut eku = ExtendedKeyUsage::new();
    if client {
        eku.client_auth();
    } else {
        eku.server_auth();
    }
    b.append_extension(eku.build().unwrap()).unwrap();
    // Strict verifiers (Python's ssl with OpenSSL 3) want the key identifiers.
    let skid = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(Some(&ca.0), None))
        .unwrap();
    b.append_extension(skid).unwrap();
    let akid = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(&ca.0), None))
        .unwrap();
    b.append_extension(akid).unwrap();
    b.sign(&ca.1, MessageDigest::sha256()).unwrap();
    (b.build(), k)
}

/// Write `name.pem` and `name.key`; returns their paths.
pub fn write(dir: &Path, name: &str, pair: &(X509, PKey<Private>)) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, pair.0.to_pem().unwrap()).unwrap();
    std::fs::write(&key, pair.1.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert, key)
}
