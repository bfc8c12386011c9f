use std::sync::mpsc;
use std::time::Duration;

use tracing_subscriber::fmt::format::DefaultFields;
use tracing_subscriber::fmt::FormatFields;

use super::*;

/// Lines written into memory, for comparing formatters.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Vec<u8>>>);

impl Memory {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct Failed;

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("it failed")
    }
}

impl std::error::Error for Failed {}

/// Events with every kind of field the guard logs, and the text that needs escaping.
fn events() {
    let quoted = "say \"hi\" \\ then\nstop";
    tracing::info!(
        uid = %"u-1", user = %"system:serviceaccount:a:b", operation = "CREATE",
        verdict = "denied", clients = 3u64, delta = -2i64, ok = true, ratio = 0.5f64,
        change = "", "admission decision"
    );
    tracing::info!(
        zero = 0u64,
        nine = 9u64,
        ten = 10u64,
        max = u64::MAX,
        "decimals"
    );
    tracing::info!(text = quoted, unicode = "café", tab = "a\tb", display = %quoted, "quotes");
    tracing::info!(
        quote = "say \"hi\"",
        backslash = "a\\b",
        del = "a\u{7f}",
        "one escape each"
    );
    tracing::warn!(error = &Failed as &(dyn std::error::Error + 'static), debug = ?vec![1, 2], r#type = "raw");
    tracing::info!("a message with \u{1b}[31m an escape and {} arguments", 2);
    tracing::info!(message = "a message field", after = 1u64);
    tracing::info!(
        log.target = "from the log crate",
        after = 1u64,
        also = "plain"
    );
    tracing::debug!(hidden = 1u64, "filtered out by the level");
}

fn logged(fields: impl for<'w> FormatFields<'w> + Send + Sync + 'static, ansi: bool) -> String {
    let out = Memory::default();
    let sink = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .without_time()
        .with_ansi(ansi)
        .with_max_level(tracing::Level::INFO)
        .fmt_fields(fields)
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, events);
    out.text()
}

#[test]
fn text_fields_are_written_as_the_default_formatter_writes_them() {
    for ansi in [false, true] {
        let ours = logged(TextFields, ansi);
        let default = logged(DefaultFields::new(), ansi);
        assert_eq!(ours, default, "ansi {ansi}");
        let events = ours
            .lines()
            .filter(|l| l.contains("mtls_guard::logs::tests"));
        assert_eq!(events.count(), 8, "{ours}");
    }
    let plain = logged(TextFields, false);
    assert!(
        plain.contains(r#"text="say \"hi\" \\ then\nstop""#),
        "{plain}"
    );
    assert!(plain.contains(r#"clients=3 delta=-2 ok=true ratio=0.5 change="""#));
    assert!(plain.contains("zero=0 nine=9 ten=10 max=18446744073709551615"));
}

#[test]
fn a_second_is_written_as_its_utc_date_and_time() {
    // Expected values from Python's datetime, leap days and a century without one included.
    for (second, text) in [
        (0, "1970-01-01T00:00:00."),
        (951_782_400, "2000-02-29T00:00:00."),
        (1_709_164_800, "2024-02-29T00:00:00."),
        (1_764_593_999, "2025-12-01T12:59:59."),
        (4_107_542_399, "2100-02-28T23:59:59."),
        (4_107_542_400, "2100-03-01T00:00:00."),
        (LAST_FOUR_DIGIT_SECOND, "9999-12-31T23:59:59."),
    ] {
        assert_eq!(std::str::from_utf8(&second_prefix(second)).unwrap(), text);
    }
}

#[test]
fn microseconds_are_six_digits_before_the_zone() {
    let prefix = second_prefix(1_764_593_999);
    for (micros, text) in [
        (0, "2025-12-01T12:59:59.000000Z"),
        (7, "2025-12-01T12:59:59.000007Z"),
        (999_999, "2025-12-01T12:59:59.999999Z"),
    ] {
        assert_eq!(
            std::str::from_utf8(&time_text(prefix, micros)).unwrap(),
            text
        );
    }
}

fn time_text_of(timer: impl FormatTime) -> String {
    let mut text = String::new();
    timer.format_time(&mut Writer::new(&mut text)).unwrap();
    text
}

#[test]
fn the_timestamp_reads_as_tracing_subscribers_own() {
    let default = tracing_subscriber::fmt::time::SystemTime;
    // Twice in one second, to use the cached date once; a second may turn between the two.
    let (ours, again, theirs) = (0..5)
        .map(|_| {
            (
                time_text_of(Timestamp),
                time_text_of(Timestamp),
                time_text_of(default),
            )
        })
        .find(|(a, b, c)| a[..19] == b[..19] && b[..19] == c[..19])
        .expect("the same second for three timestamps");
    assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
    assert!(
        ours.ends_with('Z') && again <= theirs && ours <= again,
        "{ours} {again} {theirs}"
    );
}

/// Runs `work` on a thread of its own and fails the test if it does not end in 10 s: a
/// logging thread that waits for room forever is a failure, not a hung test.
fn within_10s(work: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        work();
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("logging threads still waiting after 10 s");
}

fn line(n: usize, thread: usize) -> String {
    format!("thread {thread} line {n}\n")
}

#[test]
fn every_line_reaches_the_output_whole_and_in_order_by_the_flush() {
    let out = Memory::default();
    let (writer, flush) = Background::spawn(out.clone(), 4096);
    within_10s(move || {
        std::thread::scope(|s| {
            for thread in 0..4 {
                let writer = writer.clone();
                s.spawn(move || {
                    for n in 0..2000 {
                        (&writer).write_all(line(n, thread).as_bytes()).unwrap();
                    }
                });
            }
        })
    });
    drop(flush);
    let text = out.text();
    assert_eq!(text.lines().count(), 8000);
    for thread in 0..4 {
        let own: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("thread {thread} ")))
            .collect();
        let expected: Vec<String> = (0..2000)
            .map(|n| line(n, thread).trim_end().to_string())
            .collect();
        assert_eq!(own, expected, "thread {thread}");
    }
}

#[test]
fn a_line_reaches_the_output_before_any_flush() {
    let out = Memory::default();
    let (writer, _flush) = Background::spawn(out.clone(), 4096);
    // The second line comes while the writer waits for one, having written the first.
    for expected in ["one\n", "one\ntwo\n"] {
        let line = expected.lines().last().unwrap_or_default();
        (&writer).write_all(format!("{line}\n").as_bytes()).unwrap();
        let written = (0..1000).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            out.text() == expected
        });
        assert!(written, "the writer was not woken: {:?}", out.text());
    }
}

#[test]
fn a_backlog_of_zero_bytes_still_takes_lines() {
    let out = Memory::default();
    let (writer, flush) = Background::spawn(out.clone(), 0);
    within_10s(move || {
        for line in ["a\n", "b\n", "c\n"] {
            (&writer).write_all(line.as_bytes()).unwrap();
        }
    });
    drop(flush);
    assert_eq!(out.text(), "a\nb\nc\n");
}

/// An output whose first write waits until the test opens it.
struct Gated {
    gate: Option<mpsc::Receiver<()>>,
    out: Memory,
}

impl Write for Gated {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(gate) = self.gate.take() {
            let _ = gate.recv();
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_backlog_makes_a_logging_thread_wait_and_drops_nothing() {
    let (open, gate) = mpsc::channel();
    let out = Memory::default();
    let (writer, flush) = Background::spawn(
        Gated {
            gate: Some(gate),
            out: out.clone(),
        },
        8,
    );
    // The first line goes to the stuck output, the second fills the backlog.
    (&writer).write_all(b"first\n").unwrap();
    let taken = (0..1000).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        writer.shared.pending().lines.is_empty()
    });
    assert!(taken, "the writer never took the first line");
    (&writer).write_all(b"second\n\n").unwrap();
    let (done, finished) = mpsc::channel();
    let third = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            (&writer).write_all(b"third\n").unwrap();
            done.send(()).unwrap();
        })
    };
    assert!(
        finished.recv_timeout(Duration::from_millis(300)).is_err(),
        "the third line was taken while the backlog was full"
    );
    open.send(()).unwrap();
    finished.recv_timeout(Duration::from_secs(10)).unwrap();
    third.join().unwrap();
    drop(flush);
    assert_eq!(out.text(), "first\nsecond\n\nthird\n");
}
