//! The agent's device token over time: renewal before expiry, and a new enrolment
//! with the authentication key when the token has expired or swg rejects it.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::console::{rfc3339, ConsoleClient, Enrolment};
use super::AgentError;

/// Shortest renewal interval while the token is still valid.
const MIN_RENEWAL_INTERVAL: Duration = Duration::from_secs(60);
/// First wait after a failed renewal or enrolment, doubled after each further one,
/// before jitter.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Maximum wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Minimum wait between two attempts that the jitter draws.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// The identity and authentication key the agent enrols with. The key stays in
/// memory only, so that the agent can enrol again when its token can no longer be
/// renewed.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) auth_key: String,
    pub(crate) user: String,
    pub(crate) device: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("auth_key", &"<redacted>")
            .field("user", &self.user)
            .field("device", &self.device)
            .finish()
    }
}

/// The device tokens that the DoH endpoint rejected with 401, reported by the
/// forwarder for the session to replace.
#[derive(Debug, Default)]
pub struct TokenRejections {
    rejected: Mutex<Option<String>>,
    notify: Notify,
}

impl TokenRejections {
    /// Reports that swg rejected `token`.
    pub(crate) fn report(&self, token: &str) {
        if let Ok(mut rejected) = self.rejected.lock() {
            *rejected = Some(token.to_owned());
        }
        self.notify.notify_one();
    }

    /// Waits for the next rejection and returns the rejected token.
    pub(crate) async fn next(&self) -> String {
        loop {
            self.notify.notified().await;
            let rejected = self.rejected.lock().ok().and_then(|mut token| token.take());
            if let Some(token) = rejected {
                return token;
            }
        }
    }
}

/// The cause of a token refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The renewal time came.
    Schedule,
    /// The DoH endpoint rejected the current token.
    Rejection,
}

/// The current device token and how to get the next one.
pub(crate) struct Session {
    console: ConsoleClient,
    credentials: Credentials,
    token: Arc<RwLock<String>>,
    expires_at: u64,
    /// Failed attempts in a row, plus refreshes that a rejection triggered since the
    /// last scheduled renewal succeeded, so that a token swg keeps rejecting does
    /// not make the agent enrol again at every query.
    failures: u32,
    /// The wait after the last attempt before a rejection may trigger the next
    /// refresh. [`retry_delay`] draws it anew whenever `failures` changes.
    retry_after: Duration,
    last_attempt: Option<Instant>,
}

impl Session {
    /// Starts a session with the token of `enrolment`.
    pub(crate) fn new(
        console: ConsoleClient,
        credentials: Credentials,
        enrolment: &Enrolment,
    ) -> Self {
        Session {
            console,
            credentials,
            token: Arc::new(RwLock::new(enrolment.token.clone())),
            expires_at: enrolment.expires_at,
            failures: 0,
            retry_after: retry_delay(0),
            last_attempt: None,
        }
    }

    /// Returns the shared cell of the current token, which the forwarder reads.
    pub(crate) fn token_cell(&self) -> Arc<RwLock<String>> {
        self.token.clone()
    }

    /// Returns the current token.
    pub(crate) fn token(&self) -> String {
        self.token
            .read()
            .map(|token| token.clone())
            .unwrap_or_default()
    }

    /// Returns the console client, for the calls the token authorizes.
    pub(crate) fn console(&self) -> &ConsoleClient {
        &self.console
    }

    /// Returns when the current token is due for renewal.
    pub(crate) fn renewal_time(&self) -> Instant {
        let remaining = self.expires_at.saturating_sub(swg_identity::unix_now());
        Instant::now() + renewal_delay(Duration::from_secs(remaining))
    }

    /// Returns the earliest time a rejection may trigger the next refresh.
    pub(crate) fn earliest_retry(&self) -> Instant {
        match self.last_attempt {
            Some(at) => at + self.retry_after,
            None => Instant::now(),
        }
    }

    /// Renews the token, or enrols again when it has expired or the console rejects
    /// it, and logs the outcome. Returns `Ok` with the next renewal time after a new
    /// token, or `Err` with the retry time after a failure.
    pub(crate) async fn refresh(&mut self, trigger: Trigger) -> Result<Instant, Instant> {
        self.last_attempt = Some(Instant::now());
        let enrolment = match self.renew_or_enrol().await {
            Ok(enrolment) => enrolment,
            Err(error) => {
                let delay = self.count_failure();
                if matches!(error, AgentError::Unauthorized(_)) {
                    tracing::error!(
                        %error,
                        device = %self.credentials.device,
                        retry_in_ms = millis(delay),
                        "enrolment rejected: the authentication key is not valid for this \
                         gateway (deleted, or another tenant's); queries get SERVFAIL until \
                         enrolment succeeds"
                    );
                } else {
                    tracing::warn!(%error, retry_in_ms = millis(delay), "token refresh failed");
                }
                return Err(Instant::now() + delay);
            }
        };

        if let Ok(mut token) = self.token.write() {
            token.clone_from(&enrolment.token);
        }
        self.expires_at = enrolment.expires_at;
        if enrolment.expires_at <= swg_identity::unix_now() {
            let delay = self.count_failure();
            tracing::warn!(
                expires_at = %rfc3339(enrolment.expires_at),
                retry_in_ms = millis(delay),
                "the new device token has already expired by this machine's clock: check the clock"
            );
            return Err(Instant::now() + delay);
        }
        self.failures = match trigger {
            Trigger::Schedule => 0,
            Trigger::Rejection => self.failures.saturating_add(1),
        };
        self.retry_after = retry_delay(self.failures);
        Ok(self.renewal_time())
    }

    /// Counts one more failed attempt and returns the wait before the next one.
    fn count_failure(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.retry_after = retry_delay(self.failures);
        self.retry_after
    }

    async fn renew_or_enrol(&self) -> Result<Enrolment, AgentError> {
        if swg_identity::unix_now() < self.expires_at {
            match self.console.renew(&self.token()).await {
                Ok(renewed) => {
                    tracing::info!(expires_at = %rfc3339(renewed.expires_at), "device token renewed");
                    return Ok(renewed);
                }
                Err(AgentError::Unauthorized(reason)) => tracing::warn!(
                    device = %self.credentials.device,
                    %reason,
                    "the console rejected the device token; enrolling again with the \
                     authentication key"
                ),
                Err(error) => return Err(error),
            }
        } else {
            tracing::warn!(
                device = %self.credentials.device,
                expired_at = %rfc3339(self.expires_at),
                "device token has expired; enrolling again with the authentication key"
            );
        }

        let Credentials {
            auth_key,
            user,
            device,
        } = &self.credentials;
        let enrolment = self.console.enroll(auth_key, user, device).await?;
        tracing::info!(%device, %enrolment, "enrolled again");
        Ok(enrolment)
    }
}

/// Returns the wait before renewing a token valid for `remaining`: half of it, but
/// at least [`MIN_RENEWAL_INTERVAL`] unless the token expires sooner, and at least
/// one second.
fn renewal_delay(remaining: Duration) -> Duration {
    (remaining / 2)
        .max(remaining.min(MIN_RENEWAL_INTERVAL))
        .max(Duration::from_secs(1))
}

/// Draws the wait after `failures` failed attempts in a row: uniformly at random,
/// to the millisecond, between half of [`backoff`] and all of it, and never below
/// [`MIN_RETRY`]. The jitter spreads the retries of the many agents that lost the
/// server at the same moment, which would otherwise retry in lockstep. Without
/// random bytes from the operating system the wait is the whole backoff.
fn retry_delay(failures: u32) -> Duration {
    // The ring provider of rustls, which the agent's TLS already uses, reads the
    // operating system's generator, so the agent needs no random-number crate.
    let mut random = [0u8; 8];
    let provider = rustls::crypto::ring::default_provider();
    match provider.secure_random.fill(&mut random) {
        Ok(()) => jitter(backoff(failures), u64::from_le_bytes(random)),
        Err(_) => backoff(failures),
    }
}

/// Returns `delay` in whole milliseconds for the `retry_in_ms` log field. The jitter
/// draws waits to the millisecond, so whole seconds would misstate them by up to
/// a second.
fn millis(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}

/// Returns the wait before jitter: [`FIRST_RETRY`] doubled per failure after the
/// first, at most [`MAX_RETRY`].
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// Maps `random` to a wait between half of `delay` (at least [`MIN_RETRY`]) and
/// `delay`, in steps of a millisecond.
fn jitter(delay: Duration, random: u64) -> Duration {
    let low = (delay / 2).max(MIN_RETRY).min(delay);
    let span = u64::try_from((delay - low).as_millis()).unwrap_or(u64::MAX);
    // The modulo bias changes each value's probability by at most (span + 1) / 2^64.
    low + Duration::from_millis(random % span.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::console::Endpoints;
    use super::super::https::{tls_config, EndpointKind, HttpsClient};
    use super::*;

    /// A tracing subscriber that keeps the fields of every event on the thread it is
    /// the default of, each value in its debug form.
    #[derive(Clone, Default)]
    struct EventCapture(Arc<Mutex<Vec<HashMap<String, String>>>>);

    impl tracing::Subscriber for EventCapture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }

        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = HashMap::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                    fields.insert(field.name().to_owned(), format!("{value:?}"));
                },
            );
            self.0.lock().expect("capture lock").push(fields);
        }

        fn enter(&self, _: &tracing::span::Id) {}

        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[tokio::test]
    async fn failed_refresh_logs_retry_in_milliseconds() {
        let capture = EventCapture::default();
        let _guard = tracing::subscriber::set_default(capture.clone());
        // A console port that nothing listens on, so that the renewal fails at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let url: http::Uri = format!("https://127.0.0.1:{port}")
            .parse()
            .expect("a valid URL");
        let tls = tls_config(None).expect("the TLS configuration");
        let https = HttpsClient::new(&url, tls, EndpointKind::Console).expect("a client");
        let enrolment = Enrolment {
            token: "token-1".to_owned(),
            expires_at: swg_identity::unix_now() + 3_600,
            endpoints: Endpoints {
                doh_url: "https://127.0.0.1/dns-query".to_owned(),
            },
        };
        let credentials = Credentials {
            auth_key: "swgk_secret".to_owned(),
            user: "alice".to_owned(),
            device: "laptop".to_owned(),
        };
        let mut session = Session::new(ConsoleClient::new(https), credentials, &enrolment);

        assert!(session.refresh(Trigger::Schedule).await.is_err());
        let events = capture.0.lock().expect("capture lock").clone();
        let Some(failed) = events.iter().find(|fields| {
            fields.get("message").map(String::as_str) == Some("token refresh failed")
        }) else {
            panic!("no line `token refresh failed` in {events:?}");
        };
        // The wait is drawn to the millisecond, and the log shows all of it.
        assert_eq!(
            failed.get("retry_in_ms"),
            Some(&session.retry_after.as_millis().to_string()),
            "{failed:?}"
        );
        assert!(!failed.contains_key("retry_in_secs"), "{failed:?}");
    }

    #[test]
    fn renewal_at_half_the_lifetime_with_a_floor() {
        let secs = Duration::from_secs;
        assert_eq!(renewal_delay(secs(86_400)), secs(43_200));
        assert_eq!(renewal_delay(secs(100)), secs(60));
        assert_eq!(renewal_delay(secs(30)), secs(30));
        assert_eq!(renewal_delay(secs(0)), secs(1));
    }

    #[test]
    fn retries_back_off_to_a_cap() {
        let delays: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, vec![5, 5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn jittered_retries_stay_within_bounds() {
        for failures in [0, 1, 2, 5, 7, 8, u32::MAX] {
            let full = backoff(failures);
            for _ in 0..500 {
                let delay = retry_delay(failures);
                assert!(delay >= full / 2, "{failures}: {delay:?} < {full:?} / 2");
                assert!(delay >= MIN_RETRY, "{failures}: {delay:?}");
                assert!(delay <= full, "{failures}: {delay:?} > {full:?}");
                assert!(delay <= MAX_RETRY, "{failures}: {delay:?}");
            }
        }
    }

    #[test]
    fn jittered_retries_differ() {
        for failures in [1, 4, 20] {
            let first = retry_delay(failures);
            let draws: Vec<Duration> = (0..50).map(|_| retry_delay(failures)).collect();
            assert!(
                draws.iter().any(|delay| *delay != first),
                "{failures}: 51 draws of {first:?}"
            );
        }
    }

    #[test]
    fn jitter_maps_extremes_to_bounds() {
        let secs = Duration::from_secs;
        assert_eq!(jitter(secs(10), 0), secs(5));
        assert_eq!(jitter(secs(10), 5_000), secs(10));
        assert_eq!(jitter(secs(10), 5_001), secs(5));
        assert_eq!(
            jitter(secs(300), u64::MAX),
            secs(150) + Duration::from_millis(126_712)
        );
        // The floor applies when half the delay is shorter, and never lifts the
        // wait above the delay itself.
        assert_eq!(jitter(Duration::from_millis(1_500), 0), MIN_RETRY);
        assert_eq!(
            jitter(Duration::from_millis(500), 123),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn credentials_debug_hides_the_key() {
        let credentials = Credentials {
            auth_key: "swgk_secret".to_owned(),
            user: "alice".to_owned(),
            device: "laptop".to_owned(),
        };
        let text = format!("{credentials:?}");
        assert!(!text.contains("swgk_secret"), "{text}");
        assert!(text.contains("laptop"), "{text}");
    }
}
