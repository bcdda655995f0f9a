//! Certificate authorities an operator trusts for calls out besides the platform's own
//! (`upstream_ca_file`): a self-hosted provider (a GitLab, a Jira) or a webhook endpoint
//! behind a company's private CA. Both clients take the same list; the platform's roots stay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, bail};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::Config;

type Certificates = Vec<CertificateDer<'static>>;

/// The certificates of `upstream_ca_file` (none when it is unset). A file that cannot be
/// read, that holds a malformed block or no certificate at all is an error naming the key, so
/// that a server does not start trusting less than its operator meant.
///
/// A file is read once per process (at start, when the server builds its first client): each
/// HTTP worker builds its proxy client later, and must trust what the start checked, not
/// fail on a file moved since.
pub fn extra(config: &Config) -> anyhow::Result<Certificates> {
    let Some(path) = &config.upstream_ca_file else {
        return Ok(Vec::new());
    };
    static READ: OnceLock<Mutex<HashMap<PathBuf, Certificates>>> = OnceLock::new();
    let mut read = READ
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(certificates) = read.get(path) {
        return Ok(certificates.clone());
    }
    let certificates = load(path)?;
    read.insert(path.clone(), certificates.clone());
    Ok(certificates)
}

fn load(path: &Path) -> anyhow::Result<Certificates> {
    let context = || format!("upstream_ca_file: {}", path.display());
    let pem = std::fs::read(path).with_context(context)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| anyhow::anyhow!("{err:?}"))
        .with_context(|| format!("{}: not a PEM certificate list", context()))?;
    if certificates.is_empty() {
        bail!("{}: holds no certificate", context());
    }
    Ok(certificates)
}
