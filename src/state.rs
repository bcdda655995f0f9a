//! What every handler and resolver shares: the database, the configuration, and the
//! background bookkeepers.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::service::last_used::LastUsedRecorder;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub last_used: Arc<LastUsedRecorder>,
}
