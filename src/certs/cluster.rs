//! The steps of `plan` carried out against the API server. Every replica runs them; they agree
//! through the API server's optimistic concurrency: only one create of the Secret succeeds, and
//! an update or patch made on a stale `resourceVersion` fails with a conflict, after which the
//! replica reads both objects again. So there is never a second CA.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;

use super::issue::Pair;
use super::plan::{self, Data, Policy, Step};
use super::CertError;
use crate::tls::{self, ReloadingResolver};

/// Steps one pass may take: write the Secret, inject the bundle, write again (rollover), and
/// a few retries after conflicts.
const MAX_STEPS: usize = 8;

/// The Secret and webhook configuration this replica keeps.
#[derive(Clone)]
pub struct SelfManaged {
    secrets: Api<Secret>,
    webhooks: Api<ValidatingWebhookConfiguration>,
    secret: String,
    webhook: Option<String>,
    policy: Policy,
}

fn api(action: &'static str) -> impl Fn(kube::Error) -> CertError {
    move |e| CertError::Api {
        action,
        source: Box::new(e),
    }
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

fn data_of(secret: &Secret) -> Data {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

fn bundles_of(config: &ValidatingWebhookConfiguration) -> Vec<String> {
    config
        .webhooks
        .iter()
        .flatten()
        .map(|w| {
            let bundle = w.client_config.ca_bundle.as_ref();
            bundle.map_or_else(String::new, |b| String::from_utf8_lossy(&b.0).into_owned())
        })
        .collect()
}

impl SelfManaged {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        secret: String,
        webhook: Option<String>,
        policy: Policy,
    ) -> Result<SelfManaged, CertError> {
        policy.check()?;
        Ok(SelfManaged {
            secrets: Api::namespaced(client.clone(), namespace),
            webhooks: Api::all(client),
            secret,
            webhook,
            policy,
        })
    }

    /// Brings the Secret and the webhook's caBundle up to date; returns the serving pair.
    pub async fn reconcile(&self) -> Result<Pair, CertError> {
        for _ in 0..MAX_STEPS {
            let stored = self
                .secrets
                .get_opt(&self.secret)
                .await
                .map_err(api("read the certificate Secret"))?;
            let config = match &self.webhook {
                Some(name) => self
                    .webhooks
                    .get_opt(name)
                    .await
                    .map_err(api("read the ValidatingWebhookConfiguration"))?,
                None => None,
            };
            let data = stored.as_ref().map(data_of).unwrap_or_default();
            let bundles = config.as_ref().map(bundles_of);
            let step = plan::next(&data, bundles.as_deref(), &self.policy, SystemTime::now())?;
            let done = match step {
                Step::Done => return Ok(plan::serving_pair(&data)),
                Step::Write(next) => self.write(stored, next).await,
                Step::Inject(bundle) => match config {
                    Some(config) => self.inject(config, &bundle).await,
                    None => Ok(()),
                },
            };
            match done {
                Err(CertError::Api { source, .. }) if conflict(&source) => {
                    tracing::debug!("certificate objects changed meanwhile; reading them again")
                }
                other => other?,
            }
        }
        Err(CertError::NoProgress)
    }

    async fn write(&self, stored: Option<Secret>, data: Data) -> Result<(), CertError> {
        let data = Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect());
        match stored {
            Some(mut secret) => {
                secret.data = data;
                self.secrets
                    .replace(&self.secret, &PostParams::default(), &secret)
                    .await
                    .map_err(api("update the certificate Secret"))?;
                tracing::info!(secret = %self.secret, "certificate Secret updated");
            }
            None => {
                let mut secret = Secret {
                    data,
                    type_: Some("kubernetes.io/tls".into()),
                    ..Secret::default()
                };
                secret.metadata.name = Some(self.secret.clone());
                secret.metadata.labels =
                    Some([("app.kubernetes.io/name".into(), "mtls-guard".into())].into());
                self.secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .map_err(api("create the certificate Secret"))?;
                tracing::info!(secret = %self.secret, "certificate Secret created with a new CA");
            }
        }
        Ok(())
    }

    /// Sets the caBundle of every webhook in the configuration, on the version that was read.
    async fn inject(
        &self,
        config: ValidatingWebhookConfiguration,
        bundle: &str,
    ) -> Result<(), CertError> {
        use base64::Engine as _;
        let name = config.metadata.name.clone().unwrap_or_default();
        let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
        // A strategic merge patch keyed by webhook name touches only each caBundle, so other
        // fields (including ones newer than this build knows) are left as they are; the
        // resourceVersion makes it fail rather than race a change made since the read.
        let webhooks: Vec<serde_json::Value> = config
            .webhooks
            .iter()
            .flatten()
            .map(|w| serde_json::json!({"name": w.name, "clientConfig": {"caBundle": encoded}}))
            .collect();
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": config.metadata.resource_version},
            "webhooks": webhooks,
        });
        self.webhooks
            .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .map_err(api(
                "patch the caBundle of the ValidatingWebhookConfiguration",
            ))?;
        tracing::info!(webhook = %name, "caBundle injected");
        Ok(())
    }

    /// The first serving pair: retried until the API server lets this replica read or make it.
    pub async fn obtain(&self) -> Pair {
        let mut wait = Duration::from_secs(1);
        loop {
            match self.reconcile().await {
                Ok(pair) => return pair,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "no serving certificate yet")
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Reconciles every `every` and serves a changed pair at once; a failure is logged when it
    /// starts and when it ends, and the current pair stays in service meanwhile.
    pub async fn keep(self, resolver: Arc<ReloadingResolver>, mut serving: Pair, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let pair = match self.reconcile().await {
                Ok(pair) => pair,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot keep the serving certificate current");
                    }
                    failing = true;
                    continue;
                }
            };
            if std::mem::take(&mut failing) {
                tracing::info!("certificate objects reachable again");
            }
            if pair == serving {
                continue;
            }
            match tls::certified_key(pair.cert.as_bytes(), pair.key.as_bytes()) {
                Ok(key) => {
                    resolver.set(key);
                    serving = pair;
                    tracing::info!(secret = %self.secret, "serving the renewed certificate");
                }
                Err(e) => tracing::warn!(error = %e, "the Secret's serving pair cannot be served"),
            }
        }
    }
}
