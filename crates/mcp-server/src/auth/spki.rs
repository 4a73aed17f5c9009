//! The PEM text of an RSA public key, built from a JWK's `n` and `e`: what a server that calls
//! `verify(token, publicKeyPem)` holds, and so the HMAC secret [`super::Lapses::alg_confusion`]
//! verifies HS256 tokens with.
//!
//! The encoding is the one OpenSSL, Node's `crypto.KeyObject.export({type: "spki"})` and the
//! emulator's `hs256_public_key` token use, byte for byte: a SubjectPublicKeyInfo (RFC 5280
//! §4.1.2.7) with the `rsaEncryption` algorithm (RFC 8017 Appendix C: OID 1.2.840.113549.1.1.1,
//! NULL parameters) and the PKCS#1 `RSAPublicKey` in the BIT STRING, in DER (X.690 §10), as a
//! `PUBLIC KEY` PEM (RFC 7468 §13: padded base64 in lines of 64 characters).

use base64::Engine;

/// `SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }`, the `rsaEncryption` AlgorithmIdentifier.
const RSA_ENCRYPTION: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const SEQUENCE: u8 = 0x30;

/// The DER SubjectPublicKeyInfo of the RSA key with big-endian modulus `n` and exponent `e`.
pub(crate) fn rsa_spki_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut rsa_public_key = der_unsigned_integer(n);
    rsa_public_key.extend(der_unsigned_integer(e));
    let rsa_public_key = der(SEQUENCE, &rsa_public_key);

    // A BIT STRING's first content byte counts the unused bits of the last byte: none here.
    let mut bits = Vec::with_capacity(rsa_public_key.len() + 1);
    bits.push(0);
    bits.extend(rsa_public_key);

    let mut info = RSA_ENCRYPTION.to_vec();
    info.extend(der(BIT_STRING, &bits));
    der(SEQUENCE, &info)
}

/// `-----BEGIN PUBLIC KEY-----\n`, the padded base64 of `der` in lines of 64 characters each
/// ending with `\n`, then `-----END PUBLIC KEY-----\n`.
pub(crate) fn public_key_pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    // Base64 is ASCII, so every 64-byte chunk is a whole `str`.
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// An unsigned big-endian number as a minimal DER INTEGER: leading zero bytes dropped, one 0x00
/// put back when the high bit is set (so it does not read as negative), zero as a single 0x00.
fn der_unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let first_significant = magnitude
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(magnitude.len());
    let significant = &magnitude[first_significant..];
    let mut content = Vec::with_capacity(significant.len() + 1);
    if significant.first().is_none_or(|byte| byte & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(significant);
    der(INTEGER, &content)
}

/// A DER TLV: `tag`, the definite length (short form below 128, else long form), `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(content.len() + 6);
    encoded.push(tag);
    let length = content.len();
    if length < 0x80 {
        #[expect(clippy::cast_possible_truncation, reason = "checked below 128")]
        encoded.push(length as u8);
    } else {
        let length_bytes = length.to_be_bytes();
        let first = length_bytes
            .iter()
            .position(|byte| *byte != 0)
            .unwrap_or(length_bytes.len() - 1);
        let significant = &length_bytes[first..];
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a usize has at most 8 bytes"
        )]
        encoded.push(0x80 | significant.len() as u8);
        encoded.extend_from_slice(significant);
    }
    encoded.extend_from_slice(content);
    encoded
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;

    use super::*;

    #[test]
    fn the_spki_from_n_and_e_is_byte_identical_to_aws_lc_rs() {
        for size in [KeySize::Rsa2048, KeySize::Rsa3072, KeySize::Rsa4096] {
            let pair = KeyPair::generate(size).expect("an RSA key");
            let public = pair.public_key();
            let expected: PublicKeyX509Der<'static> = public.as_der().expect("an SPKI export");
            let ours = rsa_spki_der(
                public.modulus().big_endian_without_leading_zero(),
                public.exponent().big_endian_without_leading_zero(),
            );
            assert_eq!(ours, expected.as_ref());
        }
    }

    #[test]
    fn leading_zeros_of_n_do_not_change_the_encoding() {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("an RSA key");
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let mut padded_n = vec![0, 0];
        padded_n.extend(&n);
        assert_eq!(rsa_spki_der(&padded_n, &e), rsa_spki_der(&n, &e));
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(
            der_unsigned_integer(&[0x01, 0x00, 0x01]),
            [0x02, 0x03, 0x01, 0x00, 0x01]
        );
        assert_eq!(der_unsigned_integer(&[0x00, 0x7f]), [0x02, 0x01, 0x7f]);
        assert_eq!(der_unsigned_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_unsigned_integer(&[0x00, 0x00]), [0x02, 0x01, 0x00]);
        assert_eq!(der_unsigned_integer(&[]), [0x02, 0x01, 0x00]);
    }

    #[test]
    fn lengths_use_the_long_form_from_128() {
        assert_eq!(der(0x04, &[0; 127])[..2], [0x04, 0x7f]);
        assert_eq!(der(0x04, &[0; 128])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(der(0x04, &[0; 256])[..4], [0x04, 0x82, 0x01, 0x00]);
    }

    #[test]
    fn the_pem_has_lines_of_64_characters_each_ending_with_a_newline() {
        let pem = public_key_pem(&[0xab; 100]);
        let lines: Vec<&str> = pem.split_inclusive('\n').collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----\n");
        assert_eq!(lines[1].len(), 65);
        assert_eq!(lines[2].len(), 65);
        // 100 bytes are 136 base64 characters with the padding: 64 + 64 + 8.
        assert_eq!(lines[3], "q6urqw==\n");
        assert_eq!(lines[4], "-----END PUBLIC KEY-----\n");
        assert_eq!(lines.len(), 5);
    }
}
