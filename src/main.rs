//! The `keyway` command: parse arguments, load configuration, call into the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use keyway::config::Config;

/// mimalloc: the proxy's hot path allocates and frees small buffers on two threads at a high
/// rate, where glibc's allocator showed in the profile; it also returns memory sooner. Built
/// without transparent huge pages (`no_thp`): with THP in `madvise` mode its arenas were backed
/// by 2 MiB pages, and 10,000 idle subscriptions held 320 MB instead of 220 MB.
/// It is the C `malloc` of the process too (`libmimalloc-sys`'s `override`): SQLite allocates
/// for every request-log row it inserts, and under glibc's allocator the process made an
/// `mprotect` every 50–65 proxied calls (arenas growing and shrinking; each one also flushes
/// the other core's TLB), none with the override (`perf stat -e 'syscalls:sys_enter_mprotect'
/// -p <pid>` under `wrk -c32`). Paired runs of the raw proxy (`bench/proxy_ab.sh`, 3 × 10
/// pairs): 2.6–4.8% more requests a second, 1.7–4% less CPU per call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage the encryption keys of stored secrets.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Script against a running server (KEYWAY_URL, KEYWAY_API_KEY).
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new data key current now, then re-encrypt older values (safe to interrupt).
    Rotate,
    /// Finish an interrupted re-encryption without adding a key.
    Reencrypt,
    /// Show the data keys and how many values each protects.
    Status,
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// List connections, a page at a time.
    List {
        /// A state: added, authorized, callable (connected), invalid (expired), revoked, deleted.
        #[arg(long)]
        status: Option<String>,
        /// Only this consumer's connections.
        #[arg(long)]
        consumer: Option<String>,
        /// Only this provider's connections.
        #[arg(long)]
        service: Option<String>,
        /// Connections per page (1-200).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
        page_size: u32,
        /// Which page, from 1 (each page before it is walked through, fetching only cursors).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "cursor")]
        page: u32,
        /// Continue after this cursor (printed at the end of a page).
        #[arg(long)]
        cursor: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the live credentials of a consumer's callable connection to a service.
    GetCredentials {
        service: String,
        #[arg(long)]
        consumer: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    let command = match cli.command {
        Command::Schema => {
            keyway::cli::schema();
            return Ok(());
        }
        // The client talks to a running server; it needs no server configuration.
        Command::Connections { command } => return run_client(command).await,
        other => other,
    };
    let mut config = Config::load(cli.config.as_deref())?;
    let _log_output = keyway::telemetry::init(&config);
    match command {
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
        Command::Keys { command } => match command {
            KeysCommand::Rotate => keyway::cli::keys::rotate(config).await,
            KeysCommand::Reencrypt => keyway::cli::keys::reencrypt(config).await,
            KeysCommand::Status => keyway::cli::keys::status(config).await,
        },
        Command::Schema | Command::Connections { .. } => Ok(()),
    }
}

async fn run_client(command: ConnectionsCommand) -> anyhow::Result<()> {
    use keyway::cli::client;
    match command {
        ConnectionsCommand::List {
            status,
            consumer,
            service,
            page_size,
            page,
            cursor,
            json,
        } => {
            let args = client::ListArgs {
                status,
                consumer,
                service,
                page_size,
                start: match cursor {
                    Some(cursor) => client::Start::After(cursor),
                    None => client::Start::Page(page),
                },
                json,
            };
            client::list(args).await
        }
        ConnectionsCommand::GetCredentials {
            service,
            consumer,
            json,
        } => client::get_credentials(&service, &consumer, json).await,
    }
}
