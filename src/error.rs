//! The engine's error type.

pub use faustus_connectors::ConnectorError;

/// Everything that can stop a faustus application.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is wrong; the message says what to fix.
    #[error("configuration: {0}")]
    Config(String),
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] ConnectorError),
    /// The dataflow runtime failed.
    #[error("runtime: {0}")]
    Runtime(String),
    /// The application did not become ready in time; the message says what is still starting
    /// or restoring.
    #[error("not ready: {0}")]
    NotReady(String),
    /// What was asked for does not exist: a table, a key, a topic of the program (the
    /// program's tool commands, [`crate::cli`]).
    #[error("not found: {0}")]
    NotFound(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
