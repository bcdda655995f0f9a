//! Which of a provider's environments a connection calls: its production API, or the sandbox
//! the catalog names (stored as text on the connection).

#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
pub enum Environment {
    Production,
    Sandbox,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }

    pub fn parse_stored(text: &str) -> Self {
        if text == "sandbox" {
            Environment::Sandbox
        } else {
            Environment::Production
        }
    }
}
