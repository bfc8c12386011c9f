# The rule mtls-guard's workload lock-down check makes, in Rego, for the peer comparison:
# deny a STRICT PeerAuthentication that targets pods while pods without a proxy exist.
package mtls

import rego.v1

strict if input.request.object.spec.mtls.mode == "STRICT"

has_proxy(p) if {
	some c in p.spec.containers
	c.name == "istio-proxy"
}

has_proxy(p) if p.metadata.annotations["ambient.istio.io/redirection"] == "enabled"

targets contains p.metadata.name if {
	sel := input.request.object.spec.selector.matchLabels
	some p in data.inventory.items
	p.kind == "Pod"
	p.metadata.namespace == input.request.namespace
	every k, v in sel {
		p.metadata.labels[k] == v
	}
}

plaintext_clients contains sprintf("%s/%s", [p.metadata.namespace, p.metadata.name]) if {
	some p in data.inventory.items
	p.kind == "Pod"
	not has_proxy(p)
}

deny contains sprintf("%s sends plaintext", [c]) if {
	strict
	count(targets) > 0
	some c in plaintext_clients
}
