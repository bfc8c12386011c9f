//! What to do next about the serving certificate, decided from what the Secret holds and what
//! the webhook trusts. Pure: the cluster calls live in `cluster`, the time is passed in.
//!
//! One invariant keeps every replica trusted: a serving certificate is only ever issued by a
//! CA that the webhook's caBundle already holds, for long enough that API servers have seen it.
//! A CA rollover therefore goes: new CA in the Secret beside the old one, both in the caBundle,
//! the time the webhook was first seen holding them recorded in the Secret, then (after
//! [`PROPAGATION`] from that time) a serving certificate from the new CA; the old CA leaves the
//! bundle when it expires.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::issue::{certs_in, der_facts, der_signed_by, facts, pair_matches, pem_text, Ca, Pair};
use super::CertError;

/// Secret keys: the signing CA, the serving pair, and every CA the webhook must trust.
pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const BUNDLE: &str = "ca-bundle.crt";
/// When this replica first saw the webhook hold the bundle with the signing CA (Unix seconds);
/// written after a CA rollover, removed by the next one.
pub const TRUSTED_SINCE: &str = "ca-trusted-since";

/// How long a new CA sits in the caBundle before it signs a serving certificate: API servers
/// read webhook configurations through an informer, so they learn a new bundle a moment later.
/// Short validities (tests) wait less, so a certificate due for renewal (a third of its
/// validity left) never expires while it waits.
pub const PROPAGATION: Duration = Duration::from_secs(10);

/// The Secret's data.
pub type Data = BTreeMap<String, Vec<u8>>;

#[derive(Debug, Clone)]
pub struct Policy {
    /// DNS names and IPs of the serving certificate.
    pub names: Vec<String>,
    pub ca_validity: Duration,
    pub cert_validity: Duration,
}

impl Policy {
    /// A serving certificate must be renewable well inside its CA's life, or it would be
    /// reissued on every pass near the CA's end.
    pub fn check(&self) -> Result<(), CertError> {
        if self.cert_validity.is_zero() || self.cert_validity * 3 > self.ca_validity {
            return Err(CertError::Validity);
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Store this data in the Secret (create it when absent).
    Write(Data),
    /// Set every webhook's caBundle of the configuration to this PEM bundle.
    Inject(String),
    /// Nothing to change now.
    Done,
}

fn text<'a>(data: &'a Data, key: &str) -> &'a str {
    data.get(key)
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("")
}

/// A certificate and its key as the Secret stores them under `cert` and `key`.
fn stored_pair(data: &Data, cert: &str, key: &str) -> Pair {
    Pair {
        cert: text(data, cert).to_string(),
        key: text(data, key).to_string(),
    }
}

/// The serving certificate and key the Secret holds.
pub fn serving_pair(data: &Data) -> Pair {
    stored_pair(data, TLS_CRT, TLS_KEY)
}

fn with(data: &Data, entries: &[(&str, &str)]) -> Data {
    let mut out = data.clone();
    for (k, v) in entries {
        out.insert((*k).to_string(), v.as_bytes().to_vec());
    }
    out
}

/// The signing CA first, then older CAs from the stored bundle that have not expired.
fn bundle(data: &Data, ca: &Ca, now: SystemTime) -> String {
    let mut ders = certs_in(&ca.pair().cert);
    for der in certs_in(text(data, BUNDLE)) {
        let live = der_facts(&der, BUNDLE).is_ok_and(|f| !f.expired(now));
        if live && !ders.contains(&der) {
            ders.push(der);
        }
    }
    ders.iter().map(|der| pem_text(der)).collect()
}

fn fresh(policy: &Policy, now: SystemTime) -> Result<Data, CertError> {
    let ca = Ca::generate(policy.ca_validity, now)?;
    let leaf = ca.issue(&policy.names, policy.cert_validity, now)?;
    Ok(with(
        &Data::new(),
        &[
            (CA_CRT, &ca.pair().cert),
            (CA_KEY, &ca.pair().key),
            (BUNDLE, &ca.pair().cert),
            (TLS_CRT, &leaf.cert),
            (TLS_KEY, &leaf.key),
        ],
    ))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn trusted_since(data: &Data) -> Option<SystemTime> {
    let secs: u64 = text(data, TRUSTED_SINCE).trim().parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// A certificate name as certificates carry it: IP addresses in their canonical form, DNS
/// names in lower case.
fn canonical(name: &str) -> String {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name.to_ascii_lowercase(),
    }
}

/// Whether the stored serving certificate must be replaced.
fn leaf_due(data: &Data, ca: &Ca, policy: &Policy, now: SystemTime) -> bool {
    let pair = serving_pair(data);
    let Ok(leaf) = facts(&pair.cert, TLS_CRT) else {
        return true;
    };
    let mut names: Vec<String> = leaf.names.iter().map(|n| canonical(n)).collect();
    names.sort();
    names.dedup();
    let mut want: Vec<String> = policy.names.iter().map(|n| canonical(n)).collect();
    want.sort();
    want.dedup();
    names != want
        || leaf.due(policy.cert_validity, now)
        || !ca.signed(&pair.cert)
        || !pair_matches(&pair)
}

/// Whether the stored serving certificate still serves: it chains to a CA in the bundle and
/// has not expired. Then a new one can wait for the bundle to propagate.
fn leaf_serves(data: &Data, now: SystemTime) -> bool {
    let Some(leaf) = certs_in(text(data, TLS_CRT)).into_iter().next() else {
        return false;
    };
    let live = der_facts(&leaf, TLS_CRT).is_ok_and(|f| !f.expired(now));
    live && certs_in(text(data, BUNDLE))
        .iter()
        .any(|ca| der_signed_by(ca, &leaf))
}

/// The next step towards: a live CA in the Secret, the caBundle in the webhook equal to the
/// Secret's bundle, and a current serving certificate from that CA. `webhook` holds the
/// caBundle of each webhook in the configuration, or is `None` when there is none to keep.
pub fn next(
    data: &Data,
    webhook: Option<&[String]>,
    policy: &Policy,
    now: SystemTime,
) -> Result<Step, CertError> {
    let ca = Ca::from_pair(stored_pair(data, CA_CRT, CA_KEY));
    let ca = match ca {
        Ok(ca) if !ca.facts().expired(now) => ca,
        _ => return Ok(Step::Write(fresh(policy, now)?)),
    };
    let trusted = bundle(data, &ca, now);
    if trusted != text(data, BUNDLE) {
        return Ok(Step::Write(with(data, &[(BUNDLE, &trusted)])));
    }
    if ca.facts().due(policy.ca_validity, now) {
        let next = Ca::generate(policy.ca_validity, now)?;
        let both = certs_in(&next.pair().cert)
            .iter()
            .map(|der| pem_text(der))
            .collect::<String>()
            + &trusted;
        let mut rolled = with(
            data,
            &[
                (CA_CRT, &next.pair().cert),
                (CA_KEY, &next.pair().key),
                (BUNDLE, &both),
            ],
        );
        rolled.remove(TRUSTED_SINCE);
        return Ok(Step::Write(rolled));
    }
    if let Some(bundles) = webhook {
        if bundles.iter().any(|b| *b != trusted) {
            return Ok(Step::Inject(trusted));
        }
    }
    if leaf_due(data, &ca, policy, now) {
        let new_ca = !ca.signed(text(data, TLS_CRT));
        if new_ca && webhook.is_some() && leaf_serves(data, now) {
            let wait = PROPAGATION.min(policy.cert_validity / 6);
            match trusted_since(data) {
                None => {
                    let since = unix(now).to_string();
                    return Ok(Step::Write(with(data, &[(TRUSTED_SINCE, &since)])));
                }
                Some(since) if now < since + wait => return Ok(Step::Done),
                Some(_) => {}
            }
        }
        let leaf = ca.issue(&policy.names, policy.cert_validity, now)?;
        return Ok(Step::Write(with(
            data,
            &[(TLS_CRT, &leaf.cert), (TLS_KEY, &leaf.key)],
        )));
    }
    Ok(Step::Done)
}

#[cfg(test)]
mod tests {
    use super::super::issue::signed_by;
    use super::*;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
    }

    fn policy() -> Policy {
        Policy {
            names: vec!["mtls-guard.mtls-guard.svc".into(), "127.0.0.1".into()],
            ca_validity: Duration::from_secs(90),
            cert_validity: Duration::from_secs(30),
        }
    }

    fn written(step: Step) -> Data {
        match step {
            Step::Write(data) => data,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn fresh_at(secs: u64) -> Data {
        written(next(&Data::new(), None, &policy(), at(secs)).unwrap())
    }

    fn bundle_count(data: &Data) -> usize {
        certs_in(text(data, BUNDLE)).len()
    }

    #[test]
    fn an_empty_secret_gets_a_ca_and_a_certificate_it_signed_for_the_names() {
        let data = fresh_at(0);
        let ca = Ca::from_pair(stored_pair(&data, CA_CRT, CA_KEY)).unwrap();
        assert!(ca.signed(text(&data, TLS_CRT)));
        let leaf = facts(text(&data, TLS_CRT), TLS_CRT).unwrap();
        assert_eq!(leaf.names, policy().names);
        assert_eq!(leaf.not_after, at(30));
        assert_eq!(ca.facts().not_after, at(90));
        assert_eq!(bundle_count(&data), 1);
        assert_eq!(next(&data, None, &policy(), at(1)).unwrap(), Step::Done);
    }

    #[test]
    fn the_webhook_gets_the_bundle_until_it_holds_it() {
        let data = fresh_at(0);
        let stale = [String::new()];
        let Step::Inject(bundle) = next(&data, Some(&stale), &policy(), at(1)).unwrap() else {
            panic!("expected an injection");
        };
        assert_eq!(certs_in(&bundle), certs_in(text(&data, CA_CRT)));
        let held = [bundle];
        assert_eq!(
            next(&data, Some(&held), &policy(), at(1)).unwrap(),
            Step::Done
        );
    }

    #[test]
    fn the_certificate_is_renewed_by_the_same_ca_when_a_third_is_left() {
        let data = fresh_at(0);
        assert_eq!(next(&data, None, &policy(), at(19)).unwrap(), Step::Done);
        let renewed = written(next(&data, None, &policy(), at(21)).unwrap());
        assert_eq!(renewed[CA_CRT], data[CA_CRT]);
        assert_ne!(renewed[TLS_CRT], data[TLS_CRT]);
        let leaf = facts(text(&renewed, TLS_CRT), TLS_CRT).unwrap();
        assert_eq!(leaf.not_after, at(51));
    }

    #[test]
    fn other_names_or_a_foreign_key_get_a_new_certificate() {
        let data = fresh_at(0);
        let mut other = policy();
        other.names.push("extra.example".into());
        let mut same = policy();
        same.names = vec!["MTLS-Guard.mtls-guard.svc".into(), "127.0.0.1".into()];
        assert_eq!(
            next(&data, None, &same, at(1)).unwrap(),
            Step::Done,
            "names differing in case only do not reissue"
        );
        let renamed = written(next(&data, None, &other, at(1)).unwrap());
        assert!(facts(text(&renamed, TLS_CRT), TLS_CRT)
            .unwrap()
            .names
            .contains(&"extra.example".to_string()));
        let mut foreign = data.clone();
        foreign.insert(TLS_KEY.into(), fresh_at(0)[TLS_KEY].clone());
        let fixed = written(next(&foreign, None, &policy(), at(1)).unwrap());
        assert_ne!(fixed[TLS_CRT], data[TLS_CRT]);
    }

    #[test]
    fn a_ca_rollover_trusts_both_before_the_new_ca_signs() {
        let data = fresh_at(0);
        let rolled = written(next(&data, None, &policy(), at(61)).unwrap());
        assert_ne!(rolled[CA_CRT], data[CA_CRT]);
        assert_eq!(
            rolled[TLS_CRT], data[TLS_CRT],
            "the old certificate still serves"
        );
        assert_eq!(bundle_count(&rolled), 2);
        let old = [text(&data, BUNDLE).to_string()];
        let Step::Inject(both) = next(&rolled, Some(&old), &policy(), at(61)).unwrap() else {
            panic!("expected the two-CA bundle to be injected");
        };
        assert_eq!(both, text(&rolled, BUNDLE));
        let held = [both];
        // The old certificate has expired by now, so the new CA signs at once.
        let now = next(&rolled, Some(&held), &policy(), at(61)).unwrap();
        assert!(matches!(now, Step::Write(_)), "{now:?}");
    }

    #[test]
    fn a_new_ca_waits_for_the_bundle_to_propagate_while_the_old_certificate_serves() {
        let data = fresh_at(0);
        // Renewed at 45, the certificate still serves when the CA rolls over at 61.
        let data = written(next(&data, None, &policy(), at(45)).unwrap());
        let rolled = written(next(&data, None, &policy(), at(61)).unwrap());
        let held = [text(&rolled, BUNDLE).to_string()];
        // The webhook is first seen holding the new CA at 64 (an injection that came late):
        // the wait counts from then, not from the CA's making.
        let marked = written(next(&rolled, Some(&held), &policy(), at(64)).unwrap());
        assert_eq!(text(&marked, TRUSTED_SINCE), unix(at(64)).to_string());
        assert_eq!(marked[TLS_CRT], rolled[TLS_CRT]);
        assert_eq!(
            next(&marked, Some(&held), &policy(), at(68)).unwrap(),
            Step::Done
        );
        let renewed = written(next(&marked, Some(&held), &policy(), at(69)).unwrap());
        assert!(signed_by(text(&renewed, CA_CRT), text(&renewed, TLS_CRT)));
    }

    #[test]
    fn an_expired_ca_leaves_the_bundle() {
        let data = fresh_at(0);
        let rolled = written(next(&data, None, &policy(), at(61)).unwrap());
        let pruned = written(next(&rolled, None, &policy(), at(91)).unwrap());
        assert_eq!(bundle_count(&pruned), 1);
        assert_eq!(
            certs_in(text(&pruned, BUNDLE)),
            certs_in(text(&rolled, CA_CRT))
        );
    }

    #[test]
    fn a_certificate_longer_than_a_third_of_the_ca_is_refused() {
        let mut p = policy();
        p.cert_validity = Duration::from_secs(31);
        assert!(matches!(p.check(), Err(CertError::Validity)));
        assert!(policy().check().is_ok());
    }

    /// Every second for three CA lifetimes, one replica applies each step at once and serves
    /// whatever the Secret holds, while the API server trusts the bundle it saw 5 s earlier:
    /// the served certificate must always chain to a CA that API server trusts.
    #[test]
    fn over_rollovers_the_served_certificate_is_always_trusted() {
        let lag = 5;
        let mut data = Data::new();
        let mut webhook = vec![String::new()];
        let mut seen_by_api: Vec<String> = Vec::new();
        let mut rollovers = 0;
        for second in 0..270u64 {
            let now = at(second);
            loop {
                match next(&data, Some(&webhook), &policy(), now).unwrap() {
                    Step::Done => break,
                    Step::Write(d) => {
                        if !data.is_empty() && d.get(CA_CRT) != data.get(CA_CRT) {
                            rollovers += 1;
                        }
                        data = d;
                    }
                    Step::Inject(b) => webhook = vec![b],
                }
            }
            seen_by_api.push(webhook[0].clone());
            let trusted = &seen_by_api[seen_by_api.len().saturating_sub(lag + 1)];
            if second > lag as u64 {
                let leaf = text(&data, TLS_CRT);
                let ok = certs_in(trusted)
                    .iter()
                    .any(|ca| signed_by(&pem_text(ca), leaf));
                assert!(ok, "second {second}: the served certificate is not trusted");
                assert!(
                    !facts(leaf, TLS_CRT).unwrap().expired(now),
                    "second {second}"
                );
            }
        }
        assert!(rollovers >= 2, "{rollovers} CA rollovers");
    }
}
