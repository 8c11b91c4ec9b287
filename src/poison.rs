//! Poison code: a program's function that panics on one record.
//!
//! The functions a dataflow runs for each record (the closures given to `map`, `filter`,
//! `flat_map`, `fold`, `event_time` and the others listed in `docs/guide/availability.md`,
//! "Poison records") run inside a panic guard. When one panics, what happens is the application's
//! [`OnPanic`] policy:
//!
//! - [`OnPanic::DeadLetter`] (the default): the record is left out, and a dead letter of kind
//!   [`crate::dead_letter::PANIC`] takes its place in the same epoch: the panic's message and
//!   where it was raised, the operator, the input record's topic, partition and offset, and its
//!   key and value as JSON where the function received them by reference. The application goes
//!   on.
//! - [`OnPanic::Stop`]: the epoch of the record is not committed, and the application stops with
//!   an error that names the record. A restart reads the record again; switching the policy to
//!   dead-lettering then lets the application past it.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use serde::{Deserialize, Serialize};

use crate::dead_letter::DeadLetter;
use crate::runtime::{CommitItem, Pos};

/// What a panic in one of the program's functions, for one record, does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPanic {
    /// The record goes to the dead-letter topic with the panic's message and its origin; the
    /// application goes on.
    #[default]
    DeadLetter,
    /// The application stops, without committing the record's epoch, with an error naming the
    /// record.
    Stop,
}

impl std::str::FromStr for OnPanic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dead_letter" | "dead-letter" => Ok(OnPanic::DeadLetter),
            "stop" => Ok(OnPanic::Stop),
            other => Err(format!(
                "unknown panic policy `{other}`: use `dead_letter` or `stop`"
            )),
        }
    }
}

thread_local! {
    /// Set while [`catch`] runs a program's function: its panics are caught.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// Where the last caught panic was raised (`file:line:column`), noted by the panic hook.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Whether this thread is running a program's function whose panics [`catch`] catches.
pub(crate) fn catching() -> bool {
    CATCHING.with(Cell::get)
}

/// Installs, once per process, a panic hook in front of the one in place: a panic that [`catch`]
/// will catch is not printed (it becomes a dead letter or a stop, which say it), its location is
/// noted for the message, and it is reported to Sentry when the application reports there
/// (`crate::report`). Any other panic goes to the hook that was there.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if catching() {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                LOCATION.with(|l| *l.borrow_mut() = location);
                crate::report::caught_panic(info);
                return;
            }
            previous(info);
        }));
    });
}

/// Runs `f`, one of the program's functions; a panic becomes `Err` with its message and, when
/// the hook of [`install_hook`] saw it, where it was raised.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    /// Clears [`CATCHING`] however `f` ends.
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            CATCHING.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(CATCHING.with(|c| c.replace(true)));
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = crate::agent::panic_payload_text(payload.as_ref());
        match LOCATION.with(|l| l.borrow_mut().take()) {
            Some(at) => format!("panicked at {at}: {message}"),
            None => format!("panicked: {message}"),
        }
    })
}

/// A record whose function panicked, on its way to the committer.
pub(crate) struct Poisoned<'a> {
    /// The operator whose function panicked (`map`, `fold(totals)`, ...).
    pub operator: &'a str,
    /// The panic's message, from [`catch`].
    pub message: String,
    /// The record's position (its input origin, if it has one).
    pub pos: Pos,
    /// The key, as JSON, if the operator still holds it.
    pub key: Option<Vec<u8>>,
    /// The value, as JSON, if the operator still holds it.
    pub value: Option<Vec<u8>>,
}

impl Poisoned<'_> {
    /// What the committer gets under `policy`: a dead letter, or the order to stop. `sources`
    /// names the input topics by source index.
    pub(crate) fn into_item(self, policy: OnPanic, sources: &[String]) -> CommitItem {
        let origin = self.pos.origin().map(|(source, partition, offset)| {
            let topic = sources
                .get(source as usize)
                .cloned()
                .unwrap_or_else(|| format!("source {source}"));
            (topic, partition, offset)
        });
        let at = match &origin {
            Some((topic, partition, offset)) => {
                format!("the record at {topic}/{partition}@{offset}")
            }
            None => "a record".to_string(),
        };
        let reason = format!("`{}` {} on {at}", self.operator, self.message);
        match policy {
            OnPanic::DeadLetter => {
                log::warn!("dead letter: {reason}");
                let mut letter = DeadLetter::new(reason, self.key, self.value)
                    .operator(self.operator)
                    .panicked();
                if let Some((topic, partition, offset)) = origin {
                    letter = letter.origin(&topic, partition, offset);
                }
                letter.into_item(self.pos)
            }
            OnPanic::Stop => CommitItem::Stop(format!(
                "{reason}; the application stops (panic policy `stop`) without committing that record's epoch. Fix the function, or run with --on-panic dead_letter to send such records to the dead-letter topic and go on"
            )),
        }
    }
}

/// `value` as JSON, for a dead letter (its debug form if it does not serialize).
pub(crate) fn json<T: Serialize + std::fmt::Debug>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| format!("{value:?}").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_parses_and_a_wrong_one_says_what_to_use() {
        assert_eq!("stop".parse(), Ok(OnPanic::Stop));
        assert_eq!("dead-letter".parse(), Ok(OnPanic::DeadLetter));
        assert_eq!("dead_letter".parse(), Ok(OnPanic::DeadLetter));
        let error = "abort".parse::<OnPanic>().unwrap_err();
        assert!(error.contains("`abort`") && error.contains("`dead_letter` or `stop`"));
    }

    #[test]
    fn a_caught_panic_says_what_and_where() {
        install_hook();
        let message = catch(|| -> u32 { panic!("boom {}", 7) }).unwrap_err();
        assert!(
            message.starts_with("panicked at src/poison.rs:"),
            "{message}"
        );
        assert!(message.ends_with(": boom 7"), "{message}");
        assert!(!catching(), "the flag is cleared after a panic");
        assert_eq!(catch(|| 5), Ok(5));
    }
}
