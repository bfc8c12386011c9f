//! `mtls-guard report` and `GET /report`: the real binary, a real Prometheus, and the page
//! rendered by a real headless Chromium (`tests/browser/setup.sh` installs it).

mod common;
mod prometheus;
#[path = "../benches/support/synthetic.rs"]
mod synthetic;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{data, BIN};
use prometheus::{edge, OpenMetrics, Prometheus};

fn report(args: &[&str]) -> Output {
    Command::new(BIN).arg("report").args(args).output().unwrap()
}

fn ok_stdout(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn migrated() -> String {
    data("seed-migrated.yaml").display().to_string()
}

#[test]
fn the_table_names_the_seed_blocker() {
    let text = ok_stdout(&report(&[]));
    let row = text
        .lines()
        .find(|l| l.starts_with("foo ") && l.contains(" httpbin "))
        .unwrap_or_else(|| panic!("no foo/httpbin row:\n{text}"));
    assert!(
        row.contains("blocked") && row.ends_with("legacy/sleep"),
        "{row}"
    );
    assert!(
        text.contains("    - legacy/sleep -> foo/httpbin [inventory]: no Istio sidecar"),
        "{text}"
    );
    assert!(text.contains("Nothing can be locked down yet"), "{text}");
    assert!(
        text.starts_with("Why lock-downs are blocked (most edges first):\n  9 of 13 edge(s), 4 client(s) -> 3 server(s): one mesh setting"),
        "{text}"
    );
}

#[test]
fn the_proposed_lockdown_passes_check() {
    let out = report(&["--inventory", &migrated(), "-o", "json"]);
    let j: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).unwrap();
    let httpbin = common::report_workload(&j, "foo", "httpbin");
    assert_eq!(httpbin["status"], "ready");
    assert_eq!(httpbin["ports"][0]["port"], 80);
    assert_eq!(httpbin["ports"][0]["mode"], "PERMISSIVE");
    let yaml = httpbin["lockdown"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lockdown.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--inventory", &migrated(), "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", ok_stdout(&out));
    // The same policy on the seed, before the migration, is what the webhook denies.
    let out = Command::new(BIN)
        .args(["check", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn observed_plaintext_from_prometheus_blocks_a_workload() {
    let mut om = OpenMetrics::new();
    om.counter(
        "istio_requests_total",
        &edge(
            "destination",
            "none",
            ("unknown", "unknown"),
            ("foo", "httpbin"),
        ),
        120,
        1,
        6,
    );
    let prom = Prometheus::start(&om.text()).await;
    let out = report(&[
        "--inventory",
        &migrated(),
        "--prometheus-url",
        &prom.url(),
        "--traffic-window",
        "1h",
        "-o",
        "json",
    ]);
    let j: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).unwrap();
    assert_eq!(j["traffic"]["used"], true);
    assert_eq!(j["traffic"]["window"], "1h");
    let httpbin = common::report_workload(&j, "foo", "httpbin");
    assert_eq!(httpbin["status"], "blocked");
    assert_eq!(httpbin["blockers"][0]["tier"], "traffic");
    assert_eq!(httpbin["blockers"][0]["client"], "unknown sender");
    assert_eq!(httpbin["blockers"][0]["denies"], true);

    // Prometheus gone: the report still comes, on the inventory, and says why.
    drop(prom);
    let out = report(&[
        "--inventory",
        &migrated(),
        "--prometheus-url",
        &format!("http://127.0.0.1:{}", common::free_port()),
    ]);
    let text = ok_stdout(&out);
    assert!(
        text.contains("Traffic evidence: unavailable (Prometheus unreachable"),
        "{text}"
    );
    assert!(text.contains("# foo/httpbin"), "{text}");
}

/// Runs headless Chromium on a page, bounded in time; returns what it printed. Its output
/// goes to a file, not a pipe: a large DOM would fill a pipe nobody reads while we wait.
fn chromium(profile: &Path, args: &[String], page: &Path) -> Vec<u8> {
    std::fs::create_dir_all(profile).unwrap();
    let printed = profile.join("stdout");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::fs::File::create(&printed).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (run tests/browser/setup.sh)");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read(printed).unwrap()
}

/// The element that starts with `open` (up to its closing `close`), from a serialized DOM.
fn element<'d>(dom: &'d str, open: &str, close: &str) -> &'d str {
    let start = dom
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in the DOM"));
    let end = dom[start..].find(close).map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[test]
fn the_html_page_renders_the_blocker_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, ok_stdout(&report(&["-o", "html"]))).unwrap();

    let dom = chromium(
        &dir.path().join("profile-dom"),
        &["--dump-dom".to_string()],
        &page,
    );
    let dom = String::from_utf8_lossy(&dom);
    assert!(dom.contains("<h1>mTLS migration readiness</h1>"), "{dom}");
    let row = element(&dom, "<tr data-workload=\"foo/httpbin\">", "</tr>");
    assert!(
        row.contains(">blocked<") && row.contains("legacy/sleep"),
        "{row}"
    );
    let edge = element(
        &dom,
        "<path class=\"edge\" data-client=\"legacy/sleep\" data-server=\"foo/httpbin\"",
        "</path>",
    );
    assert!(edge.contains("var(--inventory)"), "{edge}");
    assert!(
        edge.contains("url(#head-inventory)"),
        "an arrowhead: {edge}"
    );
    let causes = element(&dom, "<table class=\"causes\">", "</table>");
    let first = element(causes, "<tr class=\"cause\">", "</tr>");
    assert!(
        first.contains("one mesh setting: auto mTLS is off") && first.contains("9 of 13 edge(s)"),
        "the root cause comes first: {first}"
    );
    let foo = element(&dom, "<tr data-namespace=\"foo\">", "</tr>");
    assert!(
        foo.contains("<td class=\"n\">2</td>") && foo.contains("title=\"2 blocked\""),
        "{foo}"
    );
    assert!(
        dom.contains("<i class=\"blocked\"></i>blocked"),
        "the bar has a legend"
    );
    assert!(
        dom.contains("<summary>Every edge (13)</summary>"),
        "the edges the causes count"
    );

    let shot = dir.path().join("report.png");
    chromium(
        &dir.path().join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000".to_string(),
        ],
        &page,
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1400, 1000));
    // A blank 1400x1000 page compresses to a few kilobytes; this one has text, colour and lines.
    assert!(png.len() > 40_000, "{} bytes", png.len());
}

/// A 35k-pod mesh: 3,500 workloads in 175 namespaces, 175 of them without a proxy.
fn large_mesh(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("mesh.json");
    let inventory = synthetic::inventory(35_000);
    std::fs::write(&path, serde_json::to_vec(&inventory).unwrap()).unwrap();
    path
}

#[test]
fn a_large_mesh_makes_a_short_page_that_chromium_renders() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = large_mesh(dir.path());
    let page = dir.path().join("report.html");
    let html = ok_stdout(&report(&[
        "--inventory",
        inventory.to_str().unwrap(),
        "-o",
        "html",
    ]));
    std::fs::write(&page, &html).unwrap();
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
    let rows = html.matches("<tr data-workload=").count();
    assert!(
        (2_900..=3_000).contains(&rows),
        "rows stop at 3,000 workloads, whole namespaces at a time: {rows}"
    );
    assert!(
        html.contains(&format!("lists {rows} of 3325 workloads")),
        "the rest are counted"
    );
    assert!(
        html.contains("150 more namespace(s)</summary>"),
        "folded namespaces"
    );
    assert_eq!(
        html.matches("<tr class=\"edge\">").count(),
        200,
        "edge rows stop at 200"
    );
    assert!(
        html.contains("Drawn: the 10 of "),
        "the graph says what it leaves out"
    );
    assert!(
        html.contains("<div>clients without a proxy: 10 client(s), first "),
        "many blockers are summed up by cause, distinct clients counted"
    );

    let dom = chromium(
        &dir.path().join("profile"),
        &["--dump-dom".to_string()],
        &page,
    );
    let dom = String::from_utf8_lossy(&dom);
    let svg = element(&dom, "<svg role=\"img\"", "</svg>");
    assert!(
        svg.matches("<rect ").count() <= 22,
        "at most 10 clients and 12 servers"
    );
    assert!(
        dom.contains("<h2>Ready to lock down now</h2>"),
        "Chromium read the page to its last section"
    );
}

#[tokio::test]
async fn serve_shows_the_same_page_at_get_report_only_when_asked() {
    let without = common::Guard::start(&[]).await;
    assert_eq!(without.ops_get("/report").await.status(), 404);
    let guard = common::Guard::start(&["--serve-report"]).await;
    let r = guard.ops_get("/report").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    let served = r.text().await.unwrap();
    assert_eq!(served, ok_stdout(&report(&["-o", "html"])));
}
