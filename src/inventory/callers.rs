//! The API server as a caller: which Service ports webhooks, APIServices and conversion
//! webhooks call.

use std::sync::Arc;

use super::Index;
use crate::model::{ApiCaller, CallerKind};

/// A Service port the API server calls, and the object that makes it.
#[derive(Debug)]
pub(super) struct Call {
    port: u16,
    kind: CallerKind,
    name: Arc<str>,
}

impl Index {
    pub fn upsert_api_caller(&mut self, caller: ApiCaller) {
        self.api_callers
            .insert((caller.kind, caller.name.clone()), caller);
        self.recount_callers();
    }

    pub fn remove_api_caller(&mut self, kind: CallerKind, name: &str) {
        if self.api_callers.remove(&(kind, name.to_string())).is_some() {
            self.recount_callers();
        }
    }

    /// Callers are few (webhooks, APIServices, CRDs with conversion): rebuilding the lookup
    /// on each change costs less than keeping it in step.
    fn recount_callers(&mut self) {
        self.called.clear();
        for c in self.api_callers.values() {
            let name: Arc<str> = c.name.as_str().into();
            for s in &c.services {
                self.called
                    .entry(s.namespace.clone())
                    .or_default()
                    .entry(s.name.clone())
                    .or_default()
                    .push(Call {
                        port: s.port,
                        kind: c.kind,
                        name: Arc::clone(&name),
                    });
            }
        }
    }

    /// Who in the API server calls this Service port.
    pub fn api_callers_of<'a>(
        &'a self,
        namespace: &str,
        service: &str,
        port: u16,
    ) -> impl Iterator<Item = (CallerKind, &'a Arc<str>)> + 'a {
        self.called
            .get(namespace)
            .and_then(|services| services.get(service))
            .into_iter()
            .flatten()
            .filter(move |c| c.port == port)
            .map(|c| (c.kind, &c.name))
    }

    /// Whether anything outside the mesh pods calls Services: the API server or external
    /// clients. Most meshes have neither, and a lock-down then skips reading its Services.
    pub fn has_outside_callers(&self) -> bool {
        self.exposed_services > 0 || !self.called.is_empty()
    }
}
