//! `mall certs --out DIR`: a development certificate set for mutual TLS (see
//! `mall_common::tls`): a CA (`ca.pem`, `ca.key`) and, signed by it, one certificate and key per
//! service of the fleet plus [`TOOLS`] (`{name}.pem`, `{name}.key`), each naming
//! `{name}.mall.internal` and valid for server and client authentication. Keys are written with
//! mode 0600; never commit them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mall_common::tls::certificate_name;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The identity of tools (grpcurl, the load generator): it may call public, user and admin
/// RPCs with a user's or admin's token, but no internal RPC names it.
pub const TOOLS: &str = "tools";
/// How many years a development certificate is valid, from the start of this year.
pub const DEFAULT_CERT_VALIDITY_YEARS: i32 = 2;
/// Average seconds in a Gregorian year, to find this year from the clock.
const SECS_PER_YEAR: i64 = 31_556_952;

/// Every name `mall certs` issues a certificate for: the services and [`TOOLS`].
pub fn names() -> Vec<&'static str> {
    crate::SERVICES
        .iter()
        .copied()
        .chain(std::iter::once(TOOLS))
        .collect()
}

fn this_year() -> i32 {
    let years = mall_types::time::unix_secs() / SECS_PER_YEAR;
    1970 + i32::try_from(years).unwrap_or(0)
}

fn validity(params: &mut CertificateParams) {
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + DEFAULT_CERT_VALIDITY_YEARS, 1, 1);
}

/// Writes `contents` to `path`; `secret` files get mode 0600.
fn write(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt as _;
        // An existing file keeps its mode on open; make sure it is private.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Generates the CA and a certificate for each of `names` into `out` (created if missing);
/// returns the files written.
pub fn generate(out: &Path, names: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    let mut emit = |file: String, contents: String, secret: bool| -> anyhow::Result<()> {
        let path = out.join(file);
        write(&path, &contents, secret)?;
        written.push(path);
        Ok(())
    };

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "TikTokMall development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key)?;
    emit("ca.pem".into(), ca_cert.pem(), false)?;
    emit("ca.key".into(), ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca, ca_key);

    for name in names {
        let dns = certificate_name(name);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![dns.clone()])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, dns);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params);
        let cert = params.signed_by(&key, &issuer)?;
        emit(format!("{name}.pem"), cert.pem(), false)?;
        emit(format!("{name}.key"), key.serialize_pem(), true)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_ca_and_one_private_key_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path(), &["cart", TOOLS]).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "ca.key",
                "cart.pem",
                "cart.key",
                "tools.pem",
                "tools.key"
            ]
        );
        #[cfg(unix)]
        for file in files.iter().filter(|f| f.extension().unwrap() == "key") {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        let pem = std::fs::read_to_string(dir.path().join("cart.pem")).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    }
}
