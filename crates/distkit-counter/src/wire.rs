//! Decoding script replies into exact `i64`s and script errors into [`DistkitError`]s.

use distkit_core::fred::error::Error as FredError;
use distkit_core::fred::types::Value;
use distkit_core::script::{Attempts, error_code, error_message};
use distkit_core::{CounterError, DistkitError, error_is_transport_failure};

/// The `i64` in a reply value: an integer, a decimal string, or nil (0).
pub(crate) fn decode_i64(value: &Value, key: &str) -> Result<i64, DistkitError> {
    let parsed = match value {
        Value::Integer(number) => Some(*number),
        Value::Null => Some(0),
        Value::String(text) => text.parse().ok(),
        Value::Bytes(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok()),
        _ => None,
    };
    parsed.ok_or_else(|| {
        CounterError::NotAnInteger {
            key: key.to_owned(),
        }
        .into()
    })
}

/// The elements of an array reply.
pub(crate) fn decode_array(value: Value) -> Result<Vec<Value>, DistkitError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        other => Err(FredError::new(
            distkit_core::fred::error::ErrorKind::Parse,
            format!(
                "expected an array reply from a counter script, got {:?}",
                other.kind()
            ),
        )
        .into()),
    }
}

/// `error` naming the counter key when every operation of the call is on that one key (see
/// [`DistkitError::about_key`]); an error of a call over several keys is left as it is. Runs
/// on the error path only.
pub(crate) fn about_one_key<'k>(
    error: DistkitError,
    mut keys: impl Iterator<Item = Option<&'k distkit_core::DistkitRedisKey>>,
) -> DistkitError {
    let Some(Some(first)) = keys.next() else {
        return error;
    };
    if keys.all(|key| key == Some(first)) {
        error.about_key("counter key", first.as_str())
    } else {
        error
    }
}

/// Turns the error of a counter script into the documented [`DistkitError`].
///
/// `key_at` names the counter key of the operation at a 0-based index of the call, as the
/// scripts report it in `DISTKIT_OVERFLOW <index>` and `DISTKIT_NOT_INTEGER <index>`.
pub(crate) fn script_error(
    error: FredError,
    attempts: Attempts,
    key_at: impl Fn(usize) -> String,
) -> DistkitError {
    if error_is_transport_failure(&error) {
        return match attempts {
            Attempts::Once => CounterError::OutcomeUnknown {
                key: None,
                source: error,
            }
            .into(),
            Attempts::Retry => error.into(),
        };
    }
    let index = || error_message(&error).trim().parse::<usize>().unwrap_or(0);
    match error_code(&error) {
        Some("DISTKIT_OVERFLOW") => CounterError::Overflow {
            key: key_at(index()),
        }
        .into(),
        Some("DISTKIT_NOT_INTEGER") => CounterError::NotAnInteger {
            key: key_at(index()),
        }
        .into(),
        // The outbox that sent the batch fills in its size.
        Some("DISTKIT_FLUSH_EXPIRED") => CounterError::FlushExpired { deltas: 0 }.into(),
        _ => error.into(),
    }
}

#[cfg(test)]
mod tests {
    use distkit_core::fred::error::ErrorKind;

    use super::*;

    #[test]
    fn replies_decode_exactly_at_the_extremes() {
        assert_eq!(decode_i64(&Value::Integer(-5), "k").unwrap(), -5);
        assert_eq!(decode_i64(&Value::Null, "k").unwrap(), 0);
        assert_eq!(
            decode_i64(&Value::from("9223372036854775807"), "k").unwrap(),
            i64::MAX
        );
        assert_eq!(
            decode_i64(&Value::from("-9223372036854775808"), "k").unwrap(),
            i64::MIN
        );
        assert!(matches!(
            decode_i64(&Value::from("12abc"), "k"),
            Err(DistkitError::CounterError(
                CounterError::NotAnInteger { .. }
            ))
        ));
    }

    #[test]
    fn script_errors_map_to_counter_errors_naming_the_key() {
        let keys = ["a", "b"];
        let key_at = |index: usize| keys[index].to_owned();
        let overflow = FredError::new(ErrorKind::Unknown, "DISTKIT_OVERFLOW 1");
        assert!(matches!(
            script_error(overflow, Attempts::Once, key_at),
            DistkitError::CounterError(CounterError::Overflow { key }) if key == "b"
        ));
        let foreign = FredError::new(ErrorKind::Unknown, "DISTKIT_NOT_INTEGER 0");
        assert!(matches!(
            script_error(foreign, Attempts::Once, key_at),
            DistkitError::CounterError(CounterError::NotAnInteger { key }) if key == "a"
        ));
        let cut = FredError::new(ErrorKind::IO, "connection reset");
        assert!(matches!(
            script_error(cut.clone(), Attempts::Once, key_at),
            DistkitError::CounterError(CounterError::OutcomeUnknown { .. })
        ));
        assert!(matches!(
            script_error(cut, Attempts::Retry, key_at),
            DistkitError::RedisError(_)
        ));
    }
}
