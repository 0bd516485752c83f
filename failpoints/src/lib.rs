//! Test-only failpoints: named places in the leader services where a test can inject an error,
//! a delay or a pause, configured per replica over `PUT /debug/v1/failpoints`.
//!
//! What this crate owns: the registry both sides share. The controller calls [`Failpoints::hit`]
//! at its steps; the HTTP layer configures and lists it. Neither depends on the other for it.
//!
//! Disabled unless the config file asks for them (`[testing] failpoints = true`); then the
//! endpoint answers 400, as upstream does for a build without failpoints, and `hit` is one
//! flag check. Unlike the `fail` crate's pause, which blocks a thread, a pause here is an async
//! wait, so a paused split does not take a runtime worker away on a two-core machine.
//!
//! Actions (upstream syntax): `off`, `return` or `return(message)`, `sleep(ms)`, `pause`. A
//! paused caller re-reads the action whenever the failpoint is reconfigured, so `off` releases
//! it and `return` turns the pause into an error.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Off,
    Return(String),
    Sleep(Duration),
    Pause,
}

impl Action {
    fn parse(raw: &str) -> Result<Action, String> {
        let raw = raw.trim();
        let arg = |name: &str| {
            raw.strip_prefix(name)
                .and_then(|r| r.strip_prefix('('))
                .and_then(|r| r.strip_suffix(')'))
        };
        match raw {
            "off" => return Ok(Action::Off),
            "pause" => return Ok(Action::Pause),
            "return" => return Ok(Action::Return(String::new())),
            _ => {}
        }
        if let Some(msg) = arg("return") {
            return Ok(Action::Return(msg.to_string()));
        }
        if let Some(ms) = arg("sleep") {
            return ms
                .trim()
                .parse::<u64>()
                .map(|ms| Action::Sleep(Duration::from_millis(ms)))
                .map_err(|_| format!("sleep needs milliseconds, got {ms:?}"));
        }
        Err(format!(
            "unknown failpoint action {raw:?}: expected off, return, return(msg), sleep(ms) or pause"
        ))
    }

    fn describe(&self) -> String {
        match self {
            Action::Off => "off".into(),
            Action::Return(m) if m.is_empty() => "return".into(),
            Action::Return(m) => format!("return({m})"),
            Action::Sleep(d) => format!("sleep({})", d.as_millis()),
            Action::Pause => "pause".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("failpoint {name}: {message}")]
pub struct FailpointError {
    pub name: String,
    pub message: String,
}

#[derive(Default)]
struct Entry {
    action: Option<Action>,
    hits: u64,
}

#[derive(Default)]
pub struct Failpoints {
    enabled: bool,
    entries: Mutex<BTreeMap<String, Entry>>,
    changed: Notify,
}

impl Failpoints {
    pub fn new(enabled: bool) -> Failpoints {
        Failpoints {
            enabled,
            ..Default::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks one entry of a configuration without applying it.
    fn check(name: &str, actions: &str) -> Result<Action, String> {
        if name.is_empty() {
            return Err("failpoint name must not be empty".into());
        }
        Action::parse(actions)
    }

    /// Applies a configuration whose every entry was checked first: all of it, or none.
    pub fn configure_all(&self, configs: &[(&str, &str)]) -> Result<(), String> {
        let checked = configs
            .iter()
            .map(|(name, actions)| Ok((*name, Self::check(name, actions)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let mut entries = self.entries();
        for (name, action) in checked {
            entries.entry(name.to_string()).or_default().action = Some(action);
        }
        drop(entries);
        self.changed.notify_waiters();
        Ok(())
    }

    #[cfg(test)]
    fn configure(&self, name: &str, actions: &str) -> Result<(), String> {
        self.configure_all(&[(name, actions)])
    }

    /// Passes the failpoint `name`: returns at once unless a test configured it.
    pub async fn hit(&self, name: &str) -> Result<(), FailpointError> {
        if !self.enabled {
            return Ok(());
        }
        let mut counted = false;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the action is read, so a reconfiguration in between wakes us.
            changed.as_mut().enable();
            let action = {
                let mut entries = self.entries();
                let entry = entries.entry(name.to_string()).or_default();
                if !counted {
                    entry.hits += 1;
                    counted = true;
                }
                entry.action.clone()
            };
            match action {
                None | Some(Action::Off) => return Ok(()),
                Some(Action::Return(message)) => {
                    tracing::info!(failpoint = name, "failpoint returns an error");
                    return Err(FailpointError {
                        name: name.to_string(),
                        message: if message.is_empty() {
                            "injected failure".into()
                        } else {
                            message
                        },
                    });
                }
                Some(Action::Sleep(d)) => {
                    tokio::time::sleep(d).await;
                    return Ok(());
                }
                Some(Action::Pause) => {
                    tracing::info!(failpoint = name, "failpoint paused");
                    changed.await;
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailpointConfig {
    pub name: String,
    pub actions: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailpointStatus {
    pub name: String,
    pub actions: String,
    /// Times a caller reached the failpoint on this replica.
    pub hits: u64,
}

impl Failpoints {
    /// Every failpoint configured or reached on this replica, by name.
    pub fn statuses(&self) -> Vec<FailpointStatus> {
        self.entries()
            .iter()
            .map(|(name, e)| FailpointStatus {
                name: name.clone(),
                actions: e.action.as_ref().map_or("off".into(), Action::describe),
                hits: e.hits,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_in_upstream_syntax() {
        assert_eq!(Action::parse("off"), Ok(Action::Off));
        assert_eq!(Action::parse("pause"), Ok(Action::Pause));
        assert_eq!(Action::parse("return"), Ok(Action::Return(String::new())));
        assert_eq!(
            Action::parse("return(boom)"),
            Ok(Action::Return("boom".into()))
        );
        assert_eq!(
            Action::parse("sleep(250)"),
            Ok(Action::Sleep(Duration::from_millis(250)))
        );
        assert!(Action::parse("sleep(x)").is_err());
        assert!(Action::parse("panic").is_err());
    }

    #[tokio::test]
    async fn a_pause_waits_until_reconfigured() {
        let fp = std::sync::Arc::new(Failpoints::new(true));
        fp.configure("p", "pause").expect("configure");
        let waiter = {
            let fp = fp.clone();
            tokio::spawn(async move { fp.hit("p").await })
        };
        // The waiter is counted as a hit once it reached the pause.
        while fp.entries().get("p").map_or(0, |e| e.hits) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        fp.configure("p", "return(stop)").expect("configure");
        let result = waiter.await.expect("join");
        assert_eq!(result.expect_err("error").message, "stop");
    }

    #[test]
    fn an_invalid_entry_applies_none_of_the_configuration() {
        let fp = Failpoints::new(true);
        let refused = fp.configure_all(&[("a", "return"), ("", "off"), ("c", "pause")]);
        assert!(refused.is_err());
        let refused = fp.configure_all(&[("a", "return"), ("b", "sleep(x)")]);
        assert!(refused.is_err());
        assert!(
            fp.entries().is_empty(),
            "a partial configuration was applied"
        );
        fp.configure_all(&[("a", "return"), ("b", "sleep(5)")])
            .expect("valid");
        assert_eq!(fp.entries().len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn any_action_string_parses_or_is_refused(raw in "\\PC{0,24}|(return|sleep)\\(.{0,12}\\)?") {
            // No panic; what parses describes itself back to the same action.
            if let Ok(action) = Action::parse(&raw) {
                proptest::prop_assert_eq!(Action::parse(&action.describe()), Ok(action));
            }
        }
    }

    #[tokio::test]
    async fn disabled_failpoints_never_fire() {
        let fp = Failpoints::new(false);
        fp.configure("p", "return").expect("configure");
        assert!(fp.hit("p").await.is_ok());
    }
}
