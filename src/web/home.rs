//! The landing page: what this server is and where to go next.

use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;

use crate::state::AppState;

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
pub struct HomePage {
    version: &'static str,
    graphiql: bool,
}

pub async fn home(state: web::Data<AppState>) -> HomePage {
    HomePage {
        version: env!("CARGO_PKG_VERSION"),
        graphiql: state.config.graphiql_enabled(),
    }
}
