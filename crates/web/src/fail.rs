//! Errors of commands and set-up steps in the library crates: any error, with a message
//! that says what was being done wrapped around it, so the binary prints the whole chain
//! once (`binding 0.0.0.0:80: Permission denied`). The libraries keep their typed errors
//! (`thiserror`) for what callers branch on; this is for what is only ever reported.

use std::fmt::Display;

/// Any error, boxed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A result whose error is reported, not matched.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What was being done, and the error it met.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WithContext {
    message: String,
    #[source]
    source: Error,
}

/// Adds what was being done to an error (or to a missing value).
pub trait Context<T> {
    /// Wraps the error in `message`.
    ///
    /// # Errors
    /// The error, wrapped.
    fn context(self, message: impl Display) -> Result<T>;

    /// Wraps the error in the message `f` makes (only when there is an error).
    ///
    /// # Errors
    /// The error, wrapped.
    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, message: impl Display) -> Result<T> {
        self.map_err(|source| {
            WithContext {
                message: message.to_string(),
                source: source.into(),
            }
            .into()
        })
    }

    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|source| {
            WithContext {
                message: f().to_string(),
                source: source.into(),
            }
            .into()
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, message: impl Display) -> Result<T> {
        self.ok_or_else(|| message.to_string().into())
    }

    fn with_context<D: Display>(self, f: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| f().to_string().into())
    }
}

/// Returns an error made of a formatted message.
#[macro_export]
macro_rules! bail {
    ($($message:tt)*) => {
        return ::std::result::Result::Err(::std::format!($($message)*).into())
    };
}

/// Every message of an error's chain, outermost first, joined by `: `; a cause whose
/// message is already in the text (many errors print their source in their own message)
/// is not repeated.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_reads_from_the_outside_in() {
        let inner: Result<()> = Err(std::io::Error::other("connection refused").into());
        let outer = inner.context("connecting to the database").unwrap_err();
        assert_eq!(
            chain(&*outer),
            "connecting to the database: connection refused"
        );
        let missing: Result<i32> = None.context("no such job");
        assert_eq!(missing.unwrap_err().to_string(), "no such job");
    }
}
