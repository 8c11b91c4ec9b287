//! Error reporting to Sentry (the cargo feature `sentry`).
//!
//! With a DSN ([`crate::App::sentry_dsn`], `--sentry-dsn`, `FAUSTUS_SENTRY_DSN`), the
//! application reports to Sentry:
//!
//! - every panic in one of the program's functions for one record (the ones [`crate::poison`]
//!   catches and dead-letters, or stops on), as an event of level `error` marked handled;
//! - every panic in an agent's handler (which the agent retries, then dead-letters) or another
//!   task of the async threads (an HTTP request), also handled;
//! - any other panic, as a `fatal` event that is sent before the hook returns (the process
//!   usually ends after it);
//! - the error a running application stops with ([`crate::Running::join`], which
//!   [`crate::Running::run_until_signal`] calls).
//!
//! Each event carries the panic's message, the stack where it was raised, and the tag
//! `app_id`. `SENTRY_ENVIRONMENT` and `SENTRY_RELEASE` name the environment and release, as
//! in Sentry's other SDKs. Without the feature, a DSN is a configuration error that names it.

use std::panic::PanicHookInfo;

use crate::config::AppConfig;
use crate::error::{Error, Result};

/// The flag, variable and method that set a DSN, for messages.
const DSN_SETTINGS: &str = "--sentry-dsn / FAUSTUS_SENTRY_DSN / App::sentry_dsn";

/// Checks the configuration's DSN: it parses, and this build can report.
pub(crate) fn validate(config: &AppConfig) -> Result<()> {
    let Some(dsn) = &config.sentry_dsn else {
        return Ok(());
    };
    imp::validate(dsn)
}

/// The reporting client of a running application; dropping it sends the events still queued
/// (for at most two seconds).
#[derive(Debug)]
pub(crate) struct Reporting {
    #[cfg(feature = "sentry")]
    client: std::sync::Arc<sentry::Client>,
}

#[cfg(feature = "sentry")]
impl Drop for Reporting {
    fn drop(&mut self) {
        self.client.close(None);
    }
}

/// Starts reporting to the configuration's DSN, if it has one.
pub(crate) fn start(config: &AppConfig) -> Result<Option<Reporting>> {
    match &config.sentry_dsn {
        Some(dsn) => imp::start(dsn, &config.app_id).map(Some),
        None => Ok(None),
    }
}

/// Reports a panic that [`crate::poison::catch`] catches (called from its panic hook, where
/// the stack is the panic's).
pub(crate) fn caught_panic(info: &PanicHookInfo<'_>) {
    imp::panic(info, true);
}

/// Reports the error an application stopped with.
pub(crate) fn error(error: &Error) {
    imp::error(error);
}

#[cfg(feature = "sentry")]
mod imp {
    use std::panic::PanicHookInfo;
    use std::sync::{Arc, Once};

    use sentry::integrations::panic::PanicIntegration;
    use sentry::protocol::{Event, Level};

    use super::{Reporting, DSN_SETTINGS};
    use crate::error::{Error, Result};

    fn parse(dsn: &str) -> Result<sentry::types::Dsn> {
        dsn.parse().map_err(|e| {
            Error::Config(format!(
                "the Sentry DSN `{dsn}` ({DSN_SETTINGS}) is not valid: {e}; copy it from the Sentry project's settings (Client Keys), e.g. https://<key>@<host>/<project>"
            ))
        })
    }

    pub(super) fn validate(dsn: &str) -> Result<()> {
        parse(dsn).map(drop)
    }

    pub(super) fn start(dsn: &str, app_id: &str) -> Result<Reporting> {
        let app_id = app_id.to_string();
        let mut options = sentry::ClientOptions::new();
        options.dsn = Some(parse(dsn)?);
        // Panics are reported by faustus' own hook (below), which knows which of them the
        // engine catches; Sentry's panic hook would report those a second time.
        options.default_integrations = false;
        options.before_send = Some(Arc::new(move |mut event: Event<'static>| {
            event
                .tags
                .entry("app_id".into())
                .or_insert_with(|| app_id.clone());
            Some(event)
        }));
        // The process's hub, which every thread's hub starts from: the workers, agents and HTTP
        // server start after this, on threads of their own.
        let client = Arc::new(sentry::Client::from(sentry::apply_defaults(options)));
        sentry::Hub::main().bind_client(Some(Arc::clone(&client)));
        install_hook();
        log::info!("reporting panics and errors to Sentry");
        Ok(Reporting { client })
    }

    /// Installs, once per process, a panic hook in front of the one in place that reports
    /// every panic, except those [`crate::poison::catch`] catches: its own hook reports them
    /// (it may sit in front of this one, and does not pass them on).
    fn install_hook() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !crate::poison::catching() {
                    let thread = std::thread::current();
                    // An agent's handler runs on the async threads, or on its consumer thread
                    // for its first poll; the agent retries the event, then dead-letters it.
                    let handled = thread.name() == Some(crate::app::ASYNC_THREAD)
                        || crate::agent::polling_handler();
                    panic(info, handled);
                }
                previous(info);
            }));
        });
    }

    pub(super) fn panic(info: &PanicHookInfo<'_>, handled: bool) {
        let Some(client) = sentry::Hub::current().client() else {
            return;
        };
        if !client.is_enabled() {
            return;
        }
        let mut event = PanicIntegration::new().event_from_panic_info(info);
        if let Some(exception) = event.exception.values.first_mut() {
            if let Some(location) = info.location() {
                let at = format!(
                    "{}:{}:{}",
                    location.file(),
                    location.line(),
                    location.column()
                );
                exception.value = exception.value.take().map(|v| format!("{v} (at {at})"));
            }
            if let Some(mechanism) = &mut exception.mechanism {
                mechanism.handled = Some(handled);
            }
        }
        if let Some(name) = std::thread::current().name() {
            event.tags.insert("thread".into(), name.to_string());
        }
        event.level = if handled { Level::Error } else { Level::Fatal };
        event.logger = Some("faustus".into());
        sentry::capture_event(event);
        if !handled {
            // The process may end right after the hook: send the event first.
            client.flush(None);
        }
    }

    pub(super) fn error(error: &Error) {
        sentry::Hub::main().capture_error(error);
    }
}

#[cfg(not(feature = "sentry"))]
mod imp {
    use std::panic::PanicHookInfo;

    use super::{Reporting, DSN_SETTINGS};
    use crate::error::{Error, Result};

    fn unavailable() -> Error {
        Error::Config(format!(
            "a Sentry DSN is set ({DSN_SETTINGS}), but faustus was built without its `sentry` feature: enable it (faustus = {{ version = \"...\", features = [\"sentry\"] }} in Cargo.toml), or unset the DSN"
        ))
    }

    pub(super) fn validate(_dsn: &str) -> Result<()> {
        Err(unavailable())
    }

    pub(super) fn start(_dsn: &str, _app_id: &str) -> Result<Reporting> {
        Err(unavailable())
    }

    pub(super) fn panic(_info: &PanicHookInfo<'_>, _handled: bool) {}

    pub(super) fn error(_error: &Error) {}
}
