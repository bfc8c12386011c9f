//! Any bytes as a `/validate` body: parsed, then decided in both modes against the demo
//! inventory and shaped into the answer, as the server does.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mtls_guard::admission::{self, GuardMode};
use mtls_guard::inventory::{file, Filters, Index};

static DEMO: LazyLock<Index> = LazyLock::new(|| {
    file::demo(Filters::default()).expect("the embedded demo inventory loads")
});

fuzz_target!(|body: &[u8]| {
    let Ok(req) = admission::parse_review(body) else {
        return;
    };
    for mode in [GuardMode::Enforce, GuardMode::Audit] {
        admission::decide(&DEMO, mode, &req).into_review_json();
    }
});
