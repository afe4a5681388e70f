//! How long a test may run: `#[traced_ffi(timeout = "10s")]`, else
//! `TRACED_FFI_TIMEOUT`, else [`DEFAULT_TIMEOUT`].

use std::fmt;
use std::time::Duration;

/// The limit of a test that names none, when `TRACED_FFI_TIMEOUT` is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The environment variable that sets the limit of tests without a
/// `timeout` option, in the attribute's syntax (`10s`, `500ms`, `2m`, `1h`).
pub const TIMEOUT_ENV: &str = "TRACED_FFI_TIMEOUT";

/// `TRACED_FFI_TIMEOUT` holds something that is not a duration.
#[derive(Debug, thiserror::Error)]
#[error(
    "read {TIMEOUT_ENV}={value:?}: expected a number above zero and a unit of `ms`, `s`, `m` \
     or `h`, e.g. {TIMEOUT_ENV}=10s"
)]
pub struct TimeoutEnvError {
    value: String,
}

/// Where a test's limit comes from, for the failure message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitSource {
    /// `#[traced_ffi(timeout = "...")]`.
    Attribute,
    /// `TRACED_FFI_TIMEOUT`.
    Environment,
    /// [`DEFAULT_TIMEOUT`].
    Default,
}

/// A test's time limit and where it comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub(crate) duration: Duration,
    pub(crate) source: LimitSource,
}

impl Limit {
    /// The attribute's limit, else the environment's, else the default.
    pub(crate) fn choose(attribute: Option<Duration>, environment: Option<Duration>) -> Limit {
        match (attribute, environment) {
            (Some(duration), _) => Limit {
                duration,
                source: LimitSource::Attribute,
            },
            (None, Some(duration)) => Limit {
                duration,
                source: LimitSource::Environment,
            },
            (None, None) => Limit {
                duration: DEFAULT_TIMEOUT,
                source: LimitSource::Default,
            },
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.duration;
        match self.source {
            LimitSource::Attribute => write!(f, "{d:?}, set by its `timeout` option"),
            LimitSource::Environment => write!(f, "{d:?}, set by {TIMEOUT_ENV}"),
            LimitSource::Default => write!(
                f,
                "{d:?}, the default; set another with #[traced_ffi(timeout = \"...\")] or \
                 {TIMEOUT_ENV}"
            ),
        }
    }
}

/// `TRACED_FFI_TIMEOUT`, if set.
pub(crate) fn from_env() -> Result<Option<Duration>, TimeoutEnvError> {
    match std::env::var(TIMEOUT_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(TimeoutEnvError {
            value: value.to_string_lossy().into_owned(),
        }),
        Ok(value) => parse_duration(&value)
            .map(Some)
            .ok_or(TimeoutEnvError { value }),
    }
}

/// `"<number><unit>"` with a unit of `ms`, `s`, `m` or `h`; `None` if
/// malformed, zero or too large. The grammar of the attribute's `timeout`
/// (checked at compile time by `traced-ffi-macros`' `parse_duration_ms`).
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number
        .checked_mul(scale)
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn malformed_zero_and_huge_durations_are_refused() {
        for text in [
            "",
            "10",
            "s",
            "0s",
            "1.5s",
            "10 s",
            " 10s",
            "-1s",
            "10days",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_attribute_wins_over_the_environment_which_wins_over_the_default() {
        let a = Some(Duration::from_secs(1));
        let e = Some(Duration::from_secs(2));
        assert_eq!(Limit::choose(a, e).source, LimitSource::Attribute);
        assert_eq!(Limit::choose(None, e).duration, Duration::from_secs(2));
        assert_eq!(Limit::choose(None, None).duration, DEFAULT_TIMEOUT);
    }
}
