use std::sync::Arc;

use bytes::Bytes;
use swg_blockpages::{
    CertificateProblem as PageCertificateProblem, Page, PageContext, Pages, UpstreamErrorKind,
    WarnForm,
};

use crate::boundary::{PageKind, PageRequest, RenderPage};
use crate::upstream::{CertificateProblem, UpstreamFailure};

/// Pages rendered by swg-blockpages.
pub struct BlockPages(pub Arc<Pages>);

impl RenderPage for BlockPages {
    fn render(&self, request: &PageRequest) -> http::Response<Bytes> {
        let mut context = PageContext::new(request.url.clone(), request.request_id.clone());
        if let Some(identity) = &request.identity {
            context.tenant_id = Some(identity.tenant.clone());
            context.user = Some(identity.user.clone());
            context.device = Some(identity.device.clone());
        }
        let page = match &request.kind {
            PageKind::Block(decision) => {
                context.rule_id = decision.rule.clone();
                context.category = decision.categories.first().cloned();
                context.reason = Some(decision.reason.clone()).filter(|reason| !reason.is_empty());
                Page::Block(context)
            }
            PageKind::Warn {
                decision,
                form_token,
            } => {
                context.rule_id = decision.rule.clone();
                context.category = decision.categories.first().cloned();
                context.reason = Some(decision.reason.clone()).filter(|reason| !reason.is_empty());
                // The URL field lets a rejected token get the warn page of the
                // same URL again; it is never trusted as a redirect target.
                let form = WarnForm {
                    hidden_fields: vec![("url".to_owned(), request.url.clone())],
                    ..WarnForm::new(form_token.clone())
                };
                Page::Warn(context, form)
            }
            PageKind::Inspection => Page::Inspection(context),
            PageKind::Unidentified => Page::Unidentified(context),
            PageKind::UpstreamError(failure) => Page::UpstreamError(context, error_kind(*failure)),
        };
        self.0.render(
            &page,
            request.accept_language.as_deref(),
            request.navigation,
        )
    }
}

fn error_kind(failure: UpstreamFailure) -> UpstreamErrorKind {
    match failure {
        UpstreamFailure::DestinationRefused(_) => UpstreamErrorKind::DestinationRefused,
        UpstreamFailure::Certificate(problem) => UpstreamErrorKind::Certificate(match problem {
            CertificateProblem::Expired | CertificateProblem::NotYetValid => {
                PageCertificateProblem::Expired
            }
            CertificateProblem::WrongName => PageCertificateProblem::WrongName,
            CertificateProblem::SelfSigned => PageCertificateProblem::SelfSigned,
            CertificateProblem::UntrustedIssuer => PageCertificateProblem::UntrustedIssuer,
            CertificateProblem::Revoked | CertificateProblem::Invalid => {
                PageCertificateProblem::Other
            }
        }),
        UpstreamFailure::Unreachable | UpstreamFailure::InvalidHost => {
            UpstreamErrorKind::Unreachable
        }
        UpstreamFailure::InvalidResponse => UpstreamErrorKind::InvalidResponse,
        UpstreamFailure::TimedOut => UpstreamErrorKind::TimedOut,
        UpstreamFailure::RequestTooLarge => UpstreamErrorKind::RequestTooLarge,
        UpstreamFailure::ResponseTooLarge => UpstreamErrorKind::ResponseTooLarge,
        UpstreamFailure::Overloaded(_) => UpstreamErrorKind::Overloaded,
    }
}
