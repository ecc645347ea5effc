use swg_activity::{
    Action as EventAction, AppClass as EventAppClass, Discovery as EventDiscovery, Event, Recorder,
    RequestId, Via,
};

use crate::boundary::{Action, AppClass, Discovery, ProxyEvent, Record};

/// Events queued on swg-activity's recorder.
pub struct ActivityRecorder(pub Recorder);

impl Record for ActivityRecorder {
    fn record(&self, proxy_event: ProxyEvent) {
        let action = match proxy_event.action {
            Action::Allow | Action::UpstreamError => EventAction::Allow,
            Action::Block | Action::Unidentified => EventAction::Block,
            Action::Warn => EventAction::Warn,
            Action::Accepted => EventAction::Accepted,
        };
        // NOTE: a request with no identity has no tenant; its event carries an empty
        // tenant so that operators can still count such refusals.
        let tenant = proxy_event
            .identity
            .as_ref()
            .map(|identity| identity.tenant.clone())
            .unwrap_or_default();
        let mut event = Event::new(tenant, Via::Proxy, proxy_event.url, action);
        if let Ok(request_id) = proxy_event.request_id.parse::<RequestId>() {
            event.request_id = request_id;
        }
        event.client_ip = Some(proxy_event.client);

        if let Some(identity) = proxy_event.identity {
            // A client known by its location alone has an empty user and device. Its
            // event leaves them out, as the resolver's events do.
            event.user = Some(identity.user).filter(|user| !user.is_empty());
            event.device = Some(identity.device).filter(|device| !device.is_empty());
            event.app = identity.app_bundle_id;
            event.app_class = match identity.app_class {
                AppClass::Unknown => EventAppClass::Unknown,
                AppClass::Browser => EventAppClass::Browser,
                AppClass::App => EventAppClass::App,
                AppClass::TrustedApp => EventAppClass::TrustedApp,
            };
            event.discovery = match identity.discovery {
                Discovery::Token => EventDiscovery::Token,
                Discovery::Correlation => EventDiscovery::Correlation,
                Discovery::Cookie => EventDiscovery::Cookie,
                Discovery::Ticket => EventDiscovery::Ticket,
            };
        }
        if let Some(decision) = proxy_event.decision {
            event.categories = decision.categories;
            event.policy = decision.policy;
            event.rule = decision.rule;
            event.reason = decision.reason;
        }
        match (proxy_event.action, proxy_event.failure) {
            (_, Some(failure)) => {
                event.reason = failure.reason();
                // The rule that allowed the URL did not refuse the destination.
                if failure.is_refusal() {
                    event.rule = None;
                }
            }
            (Action::Unidentified, _) => event.reason = "no identity".to_owned(),
            _ => {}
        }
        self.0.record(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boundary::ClientIdentity;

    fn identity(user: &str, device: &str) -> ClientIdentity {
        ClientIdentity {
            tenant: "acme".to_owned(),
            user: user.to_owned(),
            device: device.to_owned(),
            app_bundle_id: None,
            app_class: AppClass::Unknown,
            discovery: Discovery::Correlation,
        }
    }

    #[tokio::test]
    async fn location_client_event_has_no_user() {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(error) => panic!("temporary folder: {error}"),
        };
        let registry = prometheus::Registry::new();
        let (log, recorder) = match swg_activity::ActivityLog::open(
            &dir.path().join("activity.db"),
            &swg_activity::ActivityConfig::default(),
            &registry,
        ) {
            Ok(opened) => opened,
            Err(error) => panic!("activity log: {error}"),
        };
        let record = ActivityRecorder(recorder);
        for (path, user, device) in [("/office", "", ""), ("/agent", "u1", "d1")] {
            record.record(ProxyEvent {
                request_id: String::new(),
                identity: Some(identity(user, device)),
                client: std::net::IpAddr::from([127, 0, 0, 1]),
                url: format!("https://example.test{path}"),
                action: Action::Allow,
                decision: None,
                failure: None,
            });
        }
        log.flush().await;

        let now = time::OffsetDateTime::now_utc();
        let query = swg_activity::Query::new(
            "acme",
            now - time::Duration::hours(1),
            now + time::Duration::hours(1),
        );
        let events = match log.store().query(&query) {
            Ok(page) => page.events,
            Err(error) => panic!("query: {error}"),
        };
        let by_path = |path: &str| {
            events
                .iter()
                .find(|event| event.request.ends_with(path))
                .map(|event| (event.user.clone(), event.device.clone()))
        };
        assert_eq!(by_path("/office"), Some((None, None)));
        assert_eq!(
            by_path("/agent"),
            Some((Some("u1".to_owned()), Some("d1".to_owned())))
        );
    }
}
