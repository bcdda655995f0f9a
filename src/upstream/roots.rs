//! Certificate authorities an operator trusts for calls out besides the platform's own
//! (`upstream_ca_file`): a self-hosted provider (a GitLab, a Jira) or a webhook endpoint
//! behind a company's private CA. Both clients take the same list; the platform's roots stay.

use anyhow::{Context, bail};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::Config;

/// The certificates of `upstream_ca_file` (none when it is unset). A file that cannot be
/// read, that holds a malformed block or no certificate at all is an error naming the key, so
/// that a server does not start trusting less than its operator meant.
pub fn extra(config: &Config) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let Some(path) = &config.upstream_ca_file else {
        return Ok(Vec::new());
    };
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
