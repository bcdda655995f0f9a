//! Where the master key comes from: `master_key` in the configuration, or — outside
//! production only — a key file generated on first start with 0600 permissions.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

use super::envelope::KeyBytes;
use super::tokens::parse_master_key;
use crate::config::Config;

pub const KEY_FILE: &str = "master.key";

pub fn load(config: &Config) -> anyhow::Result<KeyBytes> {
    if let Some(key) = &config.master_key {
        let bytes = parse_master_key(key.expose())
            .map_err(anyhow::Error::msg)
            .context("master_key is not 32 bytes of hex or base64")?;
        return Ok(KeyBytes::new(bytes));
    }
    if config.is_production() {
        bail!("production mode needs an explicit master key (KEYWAY_MASTER_KEY)");
    }
    load_or_create_file(&config.data_dir.join(KEY_FILE))
}

fn load_or_create_file(path: &Path) -> anyhow::Result<KeyBytes> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "the key file {} is readable by others (mode {mode:o}); run chmod 600 on it",
                    path.display()
                );
            }
            let bytes = parse_master_key(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("the key file {} is damaged", path.display()))?;
            Ok(KeyBytes::new(bytes))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let key = KeyBytes::generate();
            // create_new: two processes starting at once must not both write a key.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .or_else(|_| std::fs::File::open(path))
                .with_context(|| format!("creating the key file {}", path.display()))?;
            if file.metadata()?.len() > 0 {
                drop(file);
                return load_or_create_file(path);
            }
            writeln!(file, "{}", hex::encode(key.expose()))?;
            file.sync_all()?;
            tracing::warn!(
                path = %path.display(),
                "generated a development master key; set KEYWAY_MASTER_KEY in production"
            );
            Ok(key)
        }
        Err(err) => Err(err).with_context(|| format!("reading the key file {}", path.display())),
    }
}
