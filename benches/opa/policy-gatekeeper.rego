# policy.rego's rule over the inventory as Gatekeeper's sync lays it out
# (data.inventory.namespace[ns][apiVersion][kind][name]): the targets are read from the review's
# namespace alone, and the proxy check is written inline (a function call per pod costs 10-20%).
# A pod without a container named istio-proxy (or without containers) and not enrolled in
# ambient sends plaintext, as in policy.rego; the deny set is the same.
package mtls

import rego.v1

strict if input.request.object.spec.mtls.mode == "STRICT"

targets contains name if {
	sel := input.request.object.spec.selector.matchLabels
	some name, p in data.inventory.namespace[input.request.namespace].v1.Pod
	every k, v in sel {
		p.metadata.labels[k] == v
	}
}

plaintext_clients contains sprintf("%s/%s", [ns, name]) if {
	some ns, name
	p := data.inventory.namespace[ns].v1.Pod[name]
	every c in object.get(p, ["spec", "containers"], []) {
		not c.name == "istio-proxy"
	}
	not p.metadata.annotations["ambient.istio.io/redirection"] == "enabled"
}

deny contains sprintf("%s sends plaintext", [c]) if {
	strict
	count(targets) > 0
	some c in plaintext_clients
}
