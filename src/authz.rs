//! Asks the API server, with a SubjectAccessReview, whether the requester of a change holds
//! the permission it needs (break-glass, a namespace's mode label). Only those rare requests
//! ask, within the review's deadline; a failed question refuses.

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use std::sync::Arc;

use kube::api::{Api, PostParams};
use tokio::sync::Semaphore;

use crate::admission::{Authorization, Permission, PERMISSION_GROUP};

/// Questions in flight at once: they are rare, and forged reviews must not make the guard ask
/// without limit. A question waiting here is still bounded by its review's deadline.
const CONCURRENT_QUESTIONS: usize = 4;

#[derive(Clone)]
pub struct Authorizer {
    api: Api<SubjectAccessReview>,
    questions: Arc<Semaphore>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authorizer")
    }
}

fn review_of(user: &UserInfo, p: &Permission) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some(PERMISSION_GROUP.into()),
                resource: Some(p.resource.into()),
                verb: Some(p.verb.into()),
                namespace: p.namespace.clone(),
                name: Some(p.name.clone()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

impl Authorizer {
    pub fn new(client: kube::Client) -> Authorizer {
        Authorizer {
            api: Api::all(client),
            questions: Arc::new(Semaphore::new(CONCURRENT_QUESTIONS)),
        }
    }

    pub async fn check(&self, user: &UserInfo, p: &Permission) -> Authorization {
        let Ok(_turn) = self.questions.acquire().await else {
            return Authorization::Refused("internal: the question limiter is closed".into());
        };
        let asked = self
            .api
            .create(&PostParams::default(), &review_of(user, p))
            .await;
        let who = user.username.as_deref().unwrap_or("(unknown user)");
        let what = format!(
            "{who} may not {} {}.{PERMISSION_GROUP} in namespace {}",
            p.verb,
            p.resource,
            p.namespace.as_deref().unwrap_or("(cluster)")
        );
        match asked.map(|r| r.status) {
            Ok(Some(status)) if status.allowed => Authorization::Allowed,
            Ok(Some(status)) => Authorization::Refused(match status.reason {
                Some(reason) if !reason.is_empty() => format!("{what} ({reason})"),
                _ => what,
            }),
            Ok(None) => Authorization::Refused(format!("{what}: the API server did not answer")),
            Err(e) => Authorization::Refused(format!("the authorization check failed: {e}")),
        }
    }
}
