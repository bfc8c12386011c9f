//! A NetworkPolicy, trimmed to what reachability needs (README "Reachability"): which pods it
//! selects, and for ingress and egress the peers and TCP ports its rules admit.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{Cidr, NamedPort};
use super::{bounded, Labels, ModelError};

/// A Kubernetes label selector: `matchLabels` and `matchExpressions`, all of which must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    labels: Labels,
    expressions: Vec<Expression>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expression {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    fn from_api(field: &str, s: &LabelSelector) -> Result<Selector, ModelError> {
        let labels = s.match_labels.clone().unwrap_or_default();
        let exprs = s.match_expressions.as_deref().unwrap_or_default();
        bounded(&format!("{field}.matchLabels"), labels.len())?;
        bounded(&format!("{field}.matchExpressions"), exprs.len())?;
        let expressions = exprs
            .iter()
            .map(|e| expression(field, e))
            .collect::<Result<_, _>>()?;
        Ok(Selector {
            labels,
            expressions,
        })
    }

    /// Whether the labels satisfy every requirement; an empty selector selects everything.
    pub fn matches(&self, labels: &Labels) -> bool {
        super::selector_matches(&self.labels, labels)
            && self.expressions.iter().all(|e| match e {
                Expression::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
                Expression::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
                Expression::Exists(k) => labels.contains_key(k),
                Expression::DoesNotExist(k) => !labels.contains_key(k),
            })
    }
}

fn expression(field: &str, e: &LabelSelectorRequirement) -> Result<Expression, ModelError> {
    let values = e.values.clone().unwrap_or_default();
    bounded(&format!("{field}.matchExpressions.values"), values.len())?;
    let key = e.key.clone();
    Ok(match e.operator.as_str() {
        "In" => Expression::In(key, values),
        "NotIn" => Expression::NotIn(key, values),
        "Exists" => Expression::Exists(key),
        "DoesNotExist" => Expression::DoesNotExist(key),
        other => {
            return Err(ModelError::Invalid(format!(
                "{field}: unknown selector operator {other:?}"
            )))
        }
    })
}

/// Who a rule admits: pods by selectors, or addresses by CIDR.
#[derive(Debug, Clone, PartialEq)]
pub enum Peer {
    /// `namespaces: None` means the policy's own namespace; `pods: None` means every pod.
    Pods {
        namespaces: Option<Selector>,
        pods: Option<Selector>,
    },
    Block {
        cidr: Cidr,
        except: Vec<Cidr>,
    },
}

impl Peer {
    pub fn admits_ip(&self, ip: IpAddr) -> bool {
        match self {
            Peer::Block { cidr, except } => {
                cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))
            }
            Peer::Pods { .. } => false,
        }
    }
}

/// A TCP port or range of a rule: `port` by number or name (resolved on the destination pod);
/// `None` is every port.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRange {
    pub port: Option<NamedPort>,
    pub end: Option<u16>,
}

/// One ingress or egress rule. `peers: None` admits everyone; `ports: None` every port.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRule {
    pub peers: Option<Vec<Peer>>,
    pub ports: Option<Vec<PortRange>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    /// `Some` when the policy isolates the selected pods for ingress: the rules that admit
    /// traffic (none: all ingress is denied).
    pub ingress: Option<Vec<PolicyRule>>,
    pub egress: Option<Vec<PolicyRule>>,
    /// The policy could not be read (a list too long, an unknown operator, a bad CIDR): it
    /// may admit clients nobody can see, so its namespace is judged as if not isolated.
    pub unreadable: bool,
}

impl NetworkPolicy {
    /// What checking one client against this policy can cost: one per rule, peer and port.
    pub fn weight(&self) -> usize {
        let rules = self.ingress.iter().chain(self.egress.iter()).flatten();
        1 + rules
            .map(|r| {
                1 + r.peers.as_ref().map_or(0, Vec::len) + r.ports.as_ref().map_or(0, Vec::len)
            })
            .sum::<usize>()
    }

    /// The policy as [`NetworkPolicy::from_api`] reads it, or, when it cannot, a marker that
    /// takes its namespace's policies out of use.
    pub fn read(np: &net::NetworkPolicy) -> NetworkPolicy {
        NetworkPolicy::from_api(np).unwrap_or_else(|_| NetworkPolicy {
            namespace: np.metadata.namespace.clone().unwrap_or_default(),
            name: np.metadata.name.clone().unwrap_or_default(),
            pod_selector: Selector::default(),
            ingress: None,
            egress: None,
            unreadable: true,
        })
    }

    pub fn from_api(np: &net::NetworkPolicy) -> Result<NetworkPolicy, ModelError> {
        let name = np
            .metadata
            .name
            .clone()
            .ok_or_else(|| ModelError::Invalid("NetworkPolicy without metadata.name".into()))?;
        let spec = np.spec.clone().unwrap_or_default();
        let ingress_rules = spec.ingress.unwrap_or_default();
        let egress_rules = spec.egress.unwrap_or_default();
        bounded("spec.ingress", ingress_rules.len())?;
        bounded("spec.egress", egress_rules.len())?;
        // Without policyTypes a policy isolates ingress, and egress when it has egress rules.
        let types = spec
            .policy_types
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| {
                let mut t = vec!["Ingress".to_string()];
                if !egress_rules.is_empty() {
                    t.push("Egress".into());
                }
                t
            });
        let has = |t: &str| types.iter().any(|x| x == t);
        let rules = |field: &str, list: Vec<(Option<Vec<net::NetworkPolicyPeer>>, _)>| {
            list.into_iter()
                .map(|(peers, ports)| rule(field, peers, ports))
                .collect::<Result<Vec<_>, _>>()
        };
        let ingress = ingress_rules
            .into_iter()
            .map(|r| (r.from, r.ports))
            .collect();
        let egress = egress_rules.into_iter().map(|r| (r.to, r.ports)).collect();
        Ok(NetworkPolicy {
            namespace: np.metadata.namespace.clone().unwrap_or_default(),
            name,
            pod_selector: Selector::from_api(
                "spec.podSelector",
                &spec.pod_selector.unwrap_or_default(),
            )?,
            ingress: has("Ingress")
                .then(|| rules("spec.ingress", ingress))
                .transpose()?,
            egress: has("Egress")
                .then(|| rules("spec.egress", egress))
                .transpose()?,
            unreadable: false,
        })
    }
}

fn rule(
    field: &str,
    peers: Option<Vec<net::NetworkPolicyPeer>>,
    ports: Option<Vec<net::NetworkPolicyPort>>,
) -> Result<PolicyRule, ModelError> {
    // An empty list is the same as none: everyone, every port.
    let peers = peers.filter(|p| !p.is_empty());
    let ports = ports.filter(|p| !p.is_empty());
    if let Some(p) = &peers {
        bounded(&format!("{field}.peers"), p.len())?;
    }
    if let Some(p) = &ports {
        bounded(&format!("{field}.ports"), p.len())?;
    }
    Ok(PolicyRule {
        peers: peers
            .map(|p| p.iter().map(|p| peer(field, p)).collect())
            .transpose()?,
        // mTLS is TCP: a rule's UDP and SCTP ports admit none of it.
        ports: ports.map(|p| {
            p.iter()
                .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
                .map(|p| PortRange {
                    port: p.port.as_ref().and_then(|port| match port {
                        IntOrString::Int(n) => u16::try_from(*n).ok().map(NamedPort::Number),
                        IntOrString::String(s) => Some(NamedPort::Name(s.clone())),
                    }),
                    end: p.end_port.and_then(|e| u16::try_from(e).ok()),
                })
                .collect()
        }),
    })
}

fn peer(field: &str, p: &net::NetworkPolicyPeer) -> Result<Peer, ModelError> {
    if let Some(block) = &p.ip_block {
        let cidr = |c: &str| {
            c.parse::<Cidr>()
                .map_err(|e| ModelError::Invalid(format!("{field}.ipBlock: {e}")))
        };
        let except = block.except.as_deref().unwrap_or_default();
        bounded(&format!("{field}.ipBlock.except"), except.len())?;
        return Ok(Peer::Block {
            cidr: cidr(&block.cidr)?,
            except: except.iter().map(|c| cidr(c)).collect::<Result<_, _>>()?,
        });
    }
    let selector = |s: &Option<LabelSelector>, name: &str| {
        s.as_ref()
            .map(|s| Selector::from_api(&format!("{field}.{name}"), s))
            .transpose()
    };
    Ok(Peer::Pods {
        namespaces: selector(&p.namespace_selector, "namespaceSelector")?,
        pods: selector(&p.pod_selector, "podSelector")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn np(spec: serde_json::Value) -> NetworkPolicy {
        NetworkPolicy::from_api(
            &serde_json::from_value(
                json!({"metadata": {"name": "p", "namespace": "foo"}, "spec": spec}),
            )
            .unwrap(),
        )
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn policy_types_default_to_ingress_plus_egress_when_it_has_egress_rules() {
        let ingress_only = np(json!({"podSelector": {}}));
        assert_eq!(
            ingress_only.ingress,
            Some(vec![]),
            "isolates, admits nothing"
        );
        assert_eq!(ingress_only.egress, None);
        let both = np(json!({"podSelector": {}, "egress": [{}]}));
        assert!(both.ingress.is_some() && both.egress.is_some());
        let egress_only = np(json!({"podSelector": {}, "policyTypes": ["Egress"]}));
        assert_eq!(egress_only.ingress, None);
        assert_eq!(egress_only.egress, Some(vec![]));
    }

    #[test]
    fn selectors_honour_match_expressions() {
        let p = np(json!({"podSelector": {"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]}}));
        let s = &p.pod_selector;
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[("tier", "a")])));
    }

    #[test]
    fn udp_ports_admit_no_tcp_and_ip_blocks_honour_except() {
        let p = np(json!({"podSelector": {}, "ingress": [{
            "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
            "ports": [{"protocol": "UDP", "port": 53}]}]}));
        let rule = &p.ingress.as_ref().unwrap()[0];
        assert_eq!(rule.ports, Some(vec![]));
        let peer = &rule.peers.as_ref().unwrap()[0];
        assert!(peer.admits_ip("10.2.3.4".parse().unwrap()));
        assert!(!peer.admits_ip("10.1.3.4".parse().unwrap()));
        assert!(!peer.admits_ip("192.168.0.1".parse().unwrap()));
    }

    #[test]
    fn empty_policy_types_default_like_absent_ones() {
        let p = np(json!({"podSelector": {}, "policyTypes": []}));
        assert!(p.ingress.is_some());
    }

    #[test]
    fn long_lists_and_unknown_operators_are_refused() {
        let many: Vec<_> = (0..300).map(|i| json!({"port": i})).collect();
        let raw = json!({"metadata": {"name": "p"}, "spec": {"podSelector": {},
            "ingress": [{"ports": many}]}});
        assert!(NetworkPolicy::from_api(&serde_json::from_value(raw).unwrap()).is_err());
        let raw = json!({"metadata": {"name": "p"}, "spec": {"podSelector": {
            "matchExpressions": [{"key": "a", "operator": "Near"}]}}});
        let raw = serde_json::from_value(raw).unwrap();
        assert!(NetworkPolicy::from_api(&raw).is_err());
        let marker = NetworkPolicy::read(&raw);
        assert!(marker.unreadable);
    }
}
