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
            event.user = Some(identity.user);
            event.device = Some(identity.device);
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
