//! The outcome of an option struct's `validate()`, kept by a counter object: its
//! constructor cannot fail (the API fixes `new(options) -> Arc<Self>`), so every operation
//! reports invalid options instead, before any I/O, and no background work starts.

use distkit_core::DistkitError;

/// Whether the options a counter object was built from are valid.
#[derive(Clone, Debug, Default)]
pub(crate) struct OptionsCheck {
    /// The message of the [`DistkitError::InvalidOption`] every operation returns, when the
    /// options are invalid.
    invalid: Option<String>,
}

impl OptionsCheck {
    /// Keeps the result of a `validate()` call.
    pub(crate) fn of(validated: Result<(), DistkitError>) -> Self {
        let invalid = match validated {
            Ok(()) => None,
            Err(DistkitError::InvalidOption(message)) => Some(message),
            Err(other) => Some(other.to_string()),
        };
        Self { invalid }
    }

    /// `Ok` for valid options.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] with the message of the failed `validate()`.
    #[inline]
    pub(crate) fn ok(&self) -> Result<(), DistkitError> {
        match &self.invalid {
            None => Ok(()),
            Some(message) => Err(DistkitError::InvalidOption(message.clone())),
        }
    }
}
