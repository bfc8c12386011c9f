//! Any text as an inventory file; what loads is then asked to decide the seed's lock-downs, so
//! the engine meets inventories no test wrote.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mtls_guard::admission::{self, GuardMode};
use mtls_guard::inventory::{file, Filters};

static REVIEWS: LazyLock<Vec<admission::Request>> = LazyLock::new(|| {
    [
        &include_bytes!("../../tests/data/seed-strict-policy.json")[..],
        &include_bytes!("../../tests/data/seed-mesh-strict-update.json")[..],
        &include_bytes!("../../tests/data/pa-strict-bar-httpbin.json")[..],
    ]
    .iter()
    .map(|body| admission::parse_review(body).expect("the test fixtures are reviews"))
    .collect()
});

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let mut loader = file::Loader::new(Filters::default());
    if loader.add_str("fuzz input", text).is_err() {
        return;
    }
    let index = loader.finish();
    for req in REVIEWS.iter() {
        admission::decide(&index, GuardMode::Enforce, req);
    }
});
