//! The watch of every Pod, in protobuf: a streamed list, then the changes, as the events the
//! rest of the live inventory applies.
//!
//! It follows kube-rs' watcher for a streamed list: the list ends at the bookmark annotated
//! `k8s.io/initial-events-end`, and a watch that ends after the list (the API server closes it
//! when its timeout is up, a connection ends early, or nothing arrives for longer than that
//! timeout) resumes from the last resource version it saw. Any other error ends the stream,
//! and the caller lists again after a backoff, as it does for every kind.

use bytes::BytesMut;
use futures::Stream;
use http_body_util::{BodyExt, Limited};
use kube::runtime::watcher::{Error, Event};
use kube::Client;

use super::protobuf::{self, ProtoError, WATCH_MEDIA_TYPE};
use crate::model::PodObject;

/// How long the API server keeps one watch open, as kube-rs' watcher asks.
const TIMEOUT_SECONDS: &str = "290";

/// Silence after which a connection counts as dead: the API server's timeout and a margin, as
/// kube-rs' watcher waits. Bookmarks keep a healthy watch well inside it.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(295);

/// The largest watch frame read: far over any Pod etcd accepts (1.5 MiB by default), and a
/// bound on what one connection makes the guard hold.
const FRAME_LIMIT: usize = 16 << 20;

/// How much of a refusal's body is read for its message.
const REFUSAL_LIMIT: usize = 64 << 10;

/// Where the stream is.
enum State {
    /// A watch to open: with the initial list, or resuming from a resource version.
    Open { resume_from: Option<String> },
    /// Reading a watch; `listing` until the bookmark that ends the list.
    Reading(Box<Reading>),
    /// An error was reported; the stream is over.
    Done,
}

struct Reading {
    body: kube::client::Body,
    buffer: BytesMut,
    listing: bool,
    version: Option<String>,
}

/// Every Pod in the cluster, as a streamed list and then its changes.
pub fn events(client: Client) -> impl Stream<Item = Result<Event<PodObject>, Error>> + Send {
    let start = State::Open { resume_from: None };
    futures::stream::unfold(start, move |state| {
        let client = client.clone();
        async move { next(&client, state).await }
    })
}

async fn next(
    client: &Client,
    mut state: State,
) -> Option<(Result<Event<PodObject>, Error>, State)> {
    loop {
        state = match state {
            State::Open { resume_from } => match open(client, resume_from.as_deref()).await {
                // A list begins once the API server has accepted its watch.
                Ok(body) if resume_from.is_none() => {
                    return Some((Ok(Event::Init), State::Reading(Reading::new(body, None))))
                }
                Ok(body) => State::Reading(Reading::new(body, resume_from)),
                Err(e) => return Some((Err(e), State::Done)),
            },
            State::Reading(mut reading) => match reading.next().await {
                Step::Event(event) => return Some((Ok(event), State::Reading(reading))),
                Step::Skip => State::Reading(reading),
                // Without a version to resume from, the list begins again.
                Step::Ended if !reading.listing => State::Open {
                    resume_from: reading.version,
                },
                Step::Ended => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the API server ended the list of Pods before its last one",
                    );
                    return Some((
                        Err(Error::WatchFailed(kube::Error::ReadEvents(e))),
                        State::Done,
                    ));
                }
                Step::Failed(e) => return Some((Err(e), State::Done)),
            },
            State::Done => return None,
        };
    }
}

/// Sends the watch request; an answer other than 200 is the API server's refusal, with its
/// code (a 422 says it does not stream lists).
async fn open(client: &Client, resume_from: Option<&str>) -> Result<kube::client::Body, Error> {
    let request = http::Request::get(path(resume_from))
        .header(http::header::ACCEPT, WATCH_MEDIA_TYPE)
        .body(kube::client::Body::empty())
        .map_err(|e| Error::WatchStartFailed(kube::Error::HttpError(e)))?;
    let response = client
        .send(request)
        .await
        .map_err(Error::WatchStartFailed)?;
    let code = response.status();
    if code.is_success() {
        let media_type = response.headers().get(http::header::CONTENT_TYPE);
        let media_type = media_type.and_then(|v| v.to_str().ok()).unwrap_or("");
        if !media_type.starts_with("application/vnd.kubernetes.protobuf") {
            let said = format!("the watch of Pods was answered in {media_type:?}, not protobuf");
            return Err(Error::WatchStartFailed(kube::Error::ReadEvents(
                std::io::Error::new(std::io::ErrorKind::InvalidData, said),
            )));
        }
        return Ok(response.into_body());
    }
    let body = Limited::new(response.into_body(), REFUSAL_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let status = protobuf::enveloped_status(&body)
        .or_else(|_| serde_json::from_slice::<kube::core::Status>(&body))
        .unwrap_or_else(|_| kube::core::Status::failure(&String::from_utf8_lossy(&body), ""))
        .with_code(code.as_u16());
    Err(Error::WatchStartFailed(kube::Error::Api(status.boxed())))
}

/// The watch of all Pods: a streamed list, or the changes after a resource version.
fn path(resume_from: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("watch", "true");
    query.append_pair("allowWatchBookmarks", "true");
    query.append_pair("timeoutSeconds", TIMEOUT_SECONDS);
    match resume_from {
        Some(version) => query.append_pair("resourceVersion", version),
        None => query
            .append_pair("sendInitialEvents", "true")
            .append_pair("resourceVersionMatch", "NotOlderThan"),
    };
    format!("/api/v1/pods?{}", query.finish())
}

/// What reading a watch gave. An event is moved straight on to the stream's reader, as the
/// stream yields it by value; boxing it would add an allocation per Pod.
#[allow(clippy::large_enum_variant)]
enum Step {
    Event(Event<PodObject>),
    /// A bookmark within the watch: nothing to apply.
    Skip,
    /// The API server closed the watch.
    Ended,
    Failed(Error),
}

fn broken(e: ProtoError) -> Step {
    Step::Failed(Error::WatchFailed(kube::Error::ReadEvents(
        std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    )))
}

/// Whether a read error is the connection ending early rather than failing: kube-rs resumes
/// a watch after these too.
fn ended_early(e: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        let eof = error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof);
        if eof || error.to_string().contains("unexpected EOF during chunk") {
            return true;
        }
        source = error.source();
    }
    false
}

impl Reading {
    fn new(body: kube::client::Body, resume_from: Option<String>) -> Box<Reading> {
        Box::new(Reading {
            body,
            buffer: BytesMut::new(),
            listing: resume_from.is_none(),
            version: resume_from,
        })
    }

    async fn next(&mut self) -> Step {
        loop {
            match protobuf::frame(&mut self.buffer, FRAME_LIMIT) {
                Ok(Some(frame)) => return self.event(&frame),
                Ok(None) => {}
                Err(e) => return broken(e),
            }
            let Ok(read) = tokio::time::timeout(IDLE_TIMEOUT, self.body.frame()).await else {
                return Step::Ended;
            };
            match read {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                // A watch to resume; if the API server is gone, opening it again says so.
                Some(Err(e)) if ended_early(&e) => return Step::Ended,
                Some(Err(e)) => {
                    return Step::Failed(Error::WatchFailed(kube::Error::ReadEvents(
                        std::io::Error::other(e),
                    )))
                }
                None => return Step::Ended,
            }
        }
    }

    fn event(&mut self, frame: &[u8]) -> Step {
        let event = match protobuf::event(frame) {
            Ok(event) => event,
            Err(e) => return broken(e),
        };
        match event.kind {
            b"BOOKMARK" => match protobuf::bookmark(event.object) {
                Ok((version, ends_list)) => {
                    self.version = Some(version);
                    if self.listing && ends_list {
                        self.listing = false;
                        return Step::Event(Event::InitDone);
                    }
                    Step::Skip
                }
                Err(e) => broken(e),
            },
            b"ERROR" => match protobuf::api_status(event.object) {
                Ok(status) => Step::Failed(Error::WatchError(status.boxed())),
                Err(e) => broken(e),
            },
            kind => {
                if event.object_kind != b"Pod" {
                    return broken(ProtoError::NotAPod(
                        String::from_utf8_lossy(event.object_kind).into_owned(),
                    ));
                }
                let pod = match protobuf::pod(event.object) {
                    Ok(pod) => pod,
                    Err(e) => return broken(e),
                };
                // A list that fails is listed again whole; only a watch resumes.
                if let (false, Some(version)) = (self.listing, &pod.metadata.resource_version) {
                    self.version = Some(version.clone());
                }
                match (kind, self.listing) {
                    (b"DELETED", _) => Step::Event(Event::Delete(pod)),
                    (_, true) => Step::Event(Event::InitApply(pod)),
                    (_, false) => Step::Event(Event::Apply(pod)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::StreamExt;

    use super::*;

    const LIST: &[u8] = include_bytes!("../../tests/data/pod-watch.pb");
    const EXPIRED: &[u8] = include_bytes!("../../tests/data/watch-expired.pb");
    const REFUSED: &[u8] = include_bytes!("../../tests/data/watch-refused.pb");
    const POD: &str = "httpbin-7d4f9c8b5-abcde";

    /// The frames of the captured list: the Pod's `ADDED` and the bookmark that ends the list.
    fn listed() -> (bytes::Bytes, bytes::Bytes) {
        let mut buffer = BytesMut::from(LIST);
        let mut next = || protobuf::frame(&mut buffer, FRAME_LIMIT).unwrap().unwrap();
        (next(), next())
    }

    /// The listed Pod's event again, as another type of event, in its frame.
    fn retyped(kind: &str) -> Vec<u8> {
        let (added, _) = listed();
        let rest = added.strip_prefix(b"\x0a\x05ADDED").unwrap();
        let event = [&[0x0a, kind.len() as u8], kind.as_bytes(), rest].concat();
        [&(event.len() as u32).to_be_bytes()[..], &event].concat()
    }

    /// An API server that answers the n-th watch of Pods with the n-th of `answers` (status,
    /// body), and keeps each request's Accept header and query.
    async fn api_server(answers: Vec<(u16, Vec<u8>)>) -> (Client, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        let kept = Arc::clone(&seen);
        let handler = move |request: axum::extract::Request| {
            let (seen, answers) = (Arc::clone(&kept), Arc::clone(&answers));
            async move {
                let accept = request
                    .headers()
                    .get("accept")
                    .and_then(|v| v.to_str().ok());
                let query = request.uri().query().unwrap_or("");
                seen.lock()
                    .unwrap()
                    .push(format!("{} {query}", accept.unwrap_or("")));
                let (code, body) = answers.lock().unwrap().next().unwrap_or((500, Vec::new()));
                let media_type = match body.first() {
                    Some(b'{') => "application/json",
                    _ => WATCH_MEDIA_TYPE,
                };
                let code = axum::http::StatusCode::from_u16(code).unwrap();
                (code, [(http::header::CONTENT_TYPE, media_type)], body)
            }
        };
        let app = axum::Router::new().route("/api/v1/pods", axum::routing::get(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(url.parse().unwrap());
        (Client::try_from(config).unwrap(), seen)
    }

    fn named(event: &Event<PodObject>) -> String {
        let name = |p: &PodObject| p.metadata.name.clone().unwrap_or_default();
        match event {
            Event::Init => "Init".into(),
            Event::InitApply(p) => format!("InitApply {}", name(p)),
            Event::InitDone => "InitDone".into(),
            Event::Apply(p) => format!("Apply {}", name(p)),
            Event::Delete(p) => format!("Delete {}", name(p)),
        }
    }

    /// The events of a watch against `answers`, the error that ended it, and the requests.
    async fn watch(answers: Vec<(u16, Vec<u8>)>) -> (Vec<String>, Option<Error>, Vec<String>) {
        let (client, seen) = api_server(answers).await;
        let (mut got, mut error) = (Vec::new(), None);
        let mut stream = std::pin::pin!(events(client));
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => got.push(named(&event)),
                Err(e) => error = Some(e),
            }
        }
        let seen = seen.lock().unwrap().clone();
        (got, error, seen)
    }

    #[tokio::test]
    async fn a_list_then_a_watch_resumed_from_its_bookmark_until_the_version_expires() {
        let changes = [retyped("MODIFIED"), retyped("DELETED"), EXPIRED.to_vec()].concat();
        let (got, error, seen) = watch(vec![(200, LIST.to_vec()), (200, changes)]).await;
        let expected = ["Init", &format!("InitApply {POD}"), "InitDone"];
        let expected = [
            &expected[..],
            &[&format!("Apply {POD}"), &format!("Delete {POD}")],
        ];
        assert_eq!(got, expected.concat());
        assert!(
            matches!(&error, Some(Error::WatchError(s)) if s.code == 410),
            "{error:?}"
        );
        let [list, resumed] = &seen[..] else {
            panic!("two watches: {seen:?}");
        };
        assert!(list.starts_with(WATCH_MEDIA_TYPE), "{list}");
        assert!(
            list.contains("sendInitialEvents=true&resourceVersionMatch=NotOlderThan"),
            "{list}"
        );
        let (_, mark) = listed();
        let (version, _) = protobuf::bookmark(protobuf::event(&mark).unwrap().object).unwrap();
        assert!(
            resumed.contains(&format!("resourceVersion={version}")),
            "{resumed}"
        );
        assert!(!resumed.contains("sendInitialEvents"), "{resumed}");
    }

    #[tokio::test]
    async fn a_list_cut_short_is_an_error_not_a_complete_list() {
        let (added, _) = listed();
        let cut = [&(added.len() as u32).to_be_bytes()[..], &added].concat();
        let (got, error, seen) = watch(vec![(200, cut)]).await;
        assert_eq!(got, ["Init".to_string(), format!("InitApply {POD}")]);
        assert!(matches!(error, Some(Error::WatchFailed(_))), "{error:?}");
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test]
    async fn a_refusal_keeps_the_api_servers_code_and_message() {
        let (got, error, _) = watch(vec![(422, REFUSED.to_vec())]).await;
        assert!(got.is_empty(), "{got:?}");
        let Some(Error::WatchStartFailed(kube::Error::Api(status))) = error else {
            panic!("{error:?}");
        };
        assert_eq!(status.code, 422);
        assert!(status.message.contains("sendInitialEvents"), "{status:?}");
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_ends_the_watch() {
        let (got, error, _) = watch(vec![(200, vec![0xff, 0xff, 0xff, 0xff])]).await;
        assert_eq!(got, ["Init"]);
        assert!(matches!(error, Some(Error::WatchFailed(_))), "{error:?}");
    }

    #[tokio::test]
    async fn an_answer_in_json_is_refused_rather_than_read_as_frames() {
        let json = br#"{"type":"ADDED","object":{"kind":"Pod"}}"#.to_vec();
        let (got, error, _) = watch(vec![(200, json)]).await;
        assert!(got.is_empty(), "{got:?}");
        let Some(Error::WatchStartFailed(e)) = error else {
            panic!("{error:?}");
        };
        assert!(e.to_string().contains("application/json"), "{e}");
    }
}
