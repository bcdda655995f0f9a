//! The `keyway` command: parse arguments, load configuration, call into the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use keyway::config::Config;

#[derive(Parser)]
#[command(
    name = "keyway",
    version,
    about = "A self-hosted integration-credentials vault"
)]
struct Cli {
    /// A TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "KEYWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (overrides `listen`).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Do not apply pending migrations at start; refuse to start if any are pending.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage operators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an operator; the password is prompted for, or read from stdin.
    Create {
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Mint an operator API token (`kw_admin_…`), printed once.
    Token {
        /// What the token is for, shown in lists.
        #[arg(long)]
        label: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Schema = cli.command {
        keyway::cli::schema();
        return Ok(());
    }
    let mut config = Config::load(cli.config.as_deref())?;
    keyway::telemetry::init(&config);
    match cli.command {
        Command::Serve { listen, no_migrate } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if no_migrate {
                config.auto_migrate = false;
            }
            keyway::cli::serve(config).await
        }
        Command::Migrate => keyway::cli::migrate(config).await,
        Command::Admin { command } => match command {
            AdminCommand::Create {
                email,
                password_stdin,
            } => keyway::cli::admin_create(config, &email, password_stdin).await,
            AdminCommand::Token { label } => keyway::cli::admin_token(config, &label).await,
        },
        Command::Schema => Ok(()),
    }
}
