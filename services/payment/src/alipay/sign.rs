//! RSA2 as Alipay uses it: reading the keys (PEM, or the bare base64 DER Alipay's key tool
//! prints), and the exact strings a `sign` covers. The string signed is the parameters sorted
//! by key and joined as `k=v` with `&`, values not URL-encoded: for a request every non-empty
//! parameter except `sign`; for a notification every parameter except `sign` and `sign_type`.
//! A gateway answer is signed over the exact JSON text of its `*_response` value.

use std::collections::BTreeMap;

use base64::Engine as _;
use rsa::pkcs1v15::{Signature, SigningKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::rand_core::OsRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

use crate::error::Error;

/// PEM from an environment variable may arrive with literal `\n`s.
fn unescape_pem(text: &str) -> String {
    text.trim().replace("\\n", "\n")
}

/// A PKCS#8 private key: PEM, or the bare base64 DER Alipay's key tool prints.
pub(super) fn private_key(text: &str) -> Result<RsaPrivateKey, String> {
    let text = unescape_pem(text);
    if text.contains("-----BEGIN") {
        RsaPrivateKey::from_pkcs8_pem(&text).map_err(|e| e.to_string())
    } else {
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.split_whitespace().collect::<String>())
            .map_err(|_| "neither PEM nor base64".to_string())?;
        RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| e.to_string())
    }
}

/// An X.509 SubjectPublicKeyInfo public key: PEM, or the bare base64 DER Alipay's console shows.
pub(super) fn public_key(text: &str) -> Result<RsaPublicKey, String> {
    let text = unescape_pem(text);
    if text.contains("-----BEGIN") {
        RsaPublicKey::from_public_key_pem(&text).map_err(|e| e.to_string())
    } else {
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.split_whitespace().collect::<String>())
            .map_err(|_| "neither PEM nor base64".to_string())?;
        RsaPublicKey::from_public_key_der(&der).map_err(|e| e.to_string())
    }
}

/// The exact text of the value of `key` (a quoted JSON key) in a gateway answer: from after
/// `key:` to before the last `,"sign"` (how Alipay's SDKs find the signed content).
pub(super) fn signed_response_content<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = text[start..].trim_start().strip_prefix(':')?;
    let offset = text.len() - rest.len();
    let end = text.rfind(",\"sign\"")?;
    (end > offset).then(|| text[offset..end].trim())
}

/// `k=v` pairs joined with `&`, in key order, values as they are.
fn join<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The string a request's `sign` covers: every non-empty parameter but `sign`, sorted by key.
pub fn request_sign_content(params: &BTreeMap<String, String>) -> String {
    join(
        params
            .iter()
            .filter(|(k, v)| k.as_str() != "sign" && !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// The string a notification's `sign` covers: every parameter but `sign` and `sign_type`,
/// sorted by key.
pub fn notification_sign_content(params: &BTreeMap<String, String>) -> String {
    join(
        params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "sign" | "sign_type"))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// Signs a request: its `sign` parameter, RSA2 over [`request_sign_content`]. With an RNG
/// the private-key operation is blinded; the signature is the same.
pub(super) fn sign_request(
    key: &SigningKey<Sha256>,
    params: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    let content = request_sign_content(params);
    let signature: Signature = key
        .try_sign_with_rng(&mut OsRng, content.as_bytes())
        .map_err(|e| Error::Signing(e.to_string()))?;
    params.insert(
        "sign".to_string(),
        base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_contents_sort_and_skip_what_alipay_skips() {
        let params: BTreeMap<String, String> = [
            ("b", "2"),
            ("a", "1"),
            ("sign", "x"),
            ("sign_type", "RSA2"),
            ("empty", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(request_sign_content(&params), "a=1&b=2&sign_type=RSA2");
        assert_eq!(notification_sign_content(&params), "a=1&b=2&empty=");
    }
}
