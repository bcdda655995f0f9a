//! What each CLI command does, as library calls. `main.rs` only parses arguments and calls
//! these; tests call them too.

pub mod client;
pub mod keys;

use std::io::BufRead;

use anyhow::Context;

use crate::config::Config;
use crate::crypto::Secret;
use crate::service::{admin_tokens, admins};
use crate::{Server, Signals, store};

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let production = config.is_production();
    let server = Server::start(config, Signals::Handle).await?;
    if !production {
        eprintln!(
            "keyway is listening on http://{} (press Ctrl-C to stop)",
            server.addr()
        );
    }
    server.wait().await
}

pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let db = store::connect(&config).await?;
    store::migrate(&db).await?;
    eprintln!("migrations applied");
    Ok(())
}

/// Creates an operator. The password comes from stdin (`--password-stdin`) or a prompt.
pub async fn admin_create(config: Config, email: &str, password_stdin: bool) -> anyhow::Result<()> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        Secret::new(line.trim_end_matches(['\r', '\n']))
    } else {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        anyhow::ensure!(first == again, "the passwords differ");
        Secret::new(first)
    };
    let db = open(&config).await?;
    let admin = admins::create(&db, email, password)
        .await
        .map_err(crate::error::Error::into_anyhow)?;
    eprintln!("operator {} created", admin.email);
    Ok(())
}

/// Mints an operator token and prints it once on stdout (so scripts can capture it).
pub async fn admin_token(config: Config, label: &str) -> anyhow::Result<()> {
    let db = open(&config).await?;
    let (token, secret) = admin_tokens::create(&db, label)
        .await
        .map_err(crate::error::Error::into_anyhow)?;
    eprintln!(
        "operator token \"{}\" created; it is shown this once:",
        token.label
    );
    println!("{}", secret.expose());
    Ok(())
}

pub fn schema() {
    print!("{}", crate::graphql::sdl());
}

pub(crate) async fn open(config: &Config) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let db = store::connect(config).await?;
    if config.auto_migrate {
        store::migrate(&db).await?;
    }
    Ok(db)
}
