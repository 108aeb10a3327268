//! The one error type: everything that stops a run before it has a report
//! (bad arguments, no images, the events count unreadable). What goes wrong
//! with a single request is not an error here but an outcome in the report.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument that parses but makes no sense (a zero weight, a ramp
    /// longer than the run, …).
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no images in {0} (looked for .jpg, .jpeg, .png, .gif, .webp, .bmp)")]
    NoImages(PathBuf),
    /// The events count could not be read for `--verify`.
    #[error("counting events at {url}: {message}")]
    Count { url: String, message: String },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }
}
